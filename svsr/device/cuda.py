"""The few CUDA runtime calls svsr makes, through cuda-python (``cuda.bindings.runtime``), checked.

Every handle (device pointer, pinned host pointer, stream, event, graph, graph exec) is a plain
``int``, which is what TensorRT's Python API takes for addresses and streams. Every call checks the
returned ``cudaError_t`` and raises :class:`CudaError` with the call, the error name and CUDA's own
description. Nothing else lives here: the backend's logic is in svsr/runtime/sampling/trt_backend.py, and
tests replace this class with a recording double of the same methods.

It also holds the plain-Python rule for which NVIDIA driver runs which cuda-python: a CUDA driver
runs any CUDA runtime of its own major version or older (minor version compatibility), never a
newer major. cuda-python 13.x links the CUDA 13 runtime and needs an R580+ driver; hosts on CUDA 12
drivers need cuda-python 12.x, which is what the ``svsr[tensorrt-cu12]`` extra pins.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from svsr.contract.errors import SvsrError


class CudaError(SvsrError):
    """A CUDA runtime call failed."""


class CudaDriverError(CudaError):
    """The NVIDIA driver is older than the CUDA runtime cuda-python links (one sentence naming both and the fix)."""


# The oldest driver branch of each CUDA major (Linux), and the svsr extra that pins cuda-python and
# TensorRT to that major.
DRIVER_BRANCH = {12: "R525", 13: "R580"}
TENSORRT_EXTRA = {12: "tensorrt-cu12", 13: "tensorrt-cu13"}


def parse_cuda_version(value: int | str) -> tuple[int, int]:
    """CUDA's integer version as (major, minor): 12040 -> (12, 4), 13000 -> (13, 0), 0 (no driver) -> (0, 0)."""
    number = int(value)
    if number < 0:
        raise ValueError(f"{value!r} is not a CUDA version number (like 12040 for CUDA 12.4)")
    return number // 1000, (number % 1000) // 10


def format_cuda_version(value: int | str | tuple[int, int]) -> str:
    """12040 or (12, 4) -> "12.4"."""
    major, minor = value if isinstance(value, tuple) else parse_cuda_version(value)
    return f"{major}.{minor}"


def driver_problem(driver: int | str, runtime: int | str) -> str | None:
    """The sentence saying why this driver cannot run cuda-python's CUDA runtime, or None when it can.

    ``driver``: ``cudaDriverGetVersion`` (0 when no driver is installed: nothing to compare, None);
    ``runtime``: ``cudaRuntimeGetVersion`` of cuda-python. A driver runs runtimes of its own CUDA
    major or older; a newer major fails every call with cudaErrorInsufficientDriver.
    """
    (d_major, d_minor), (r_major, r_minor) = parse_cuda_version(driver), parse_cuda_version(runtime)
    if d_major == 0 or d_major >= r_major:
        return None
    head = f"the NVIDIA driver supports CUDA {d_major}.{d_minor} but cuda-python {r_major}.{r_minor} needs CUDA {r_major}"
    update = f"update the driver to {DRIVER_BRANCH[r_major]}+" if r_major in DRIVER_BRANCH else f"update the driver to one for CUDA {r_major}"
    if d_major in TENSORRT_EXTRA:
        return f"{head}; install svsr[{TENSORRT_EXTRA[d_major]}] or {update}."
    oldest = min(TENSORRT_EXTRA)
    return f"{head}; {update} (or to {DRIVER_BRANCH[oldest]}+ and install svsr[{TENSORRT_EXTRA[oldest]}])."


def cuda_versions() -> tuple[int, int]:
    """(driver, runtime) CUDA versions as cuda-python reports them (driver 0: no NVIDIA driver); CudaError without cuda-python."""
    rt = _runtime()
    err, driver = rt.cudaDriverGetVersion()
    if int(err) != 0:  # pragma: no cover - CUDA answers 0 rather than failing without a driver
        driver = 0
    err, runtime = rt.cudaRuntimeGetVersion()
    if int(err) != 0:  # pragma: no cover
        raise CudaError("cuda-python could not report its CUDA runtime version (cudaRuntimeGetVersion failed).")
    return int(driver or 0), int(runtime)


def check_cuda_driver() -> None:
    """CudaDriverError (one sentence) when the driver is older than cuda-python's CUDA runtime; else nothing.

    Without cuda-python or without a driver there is nothing to compare: the callers' own checks say
    what is missing.
    """
    try:
        driver, runtime = cuda_versions()
    except CudaError:
        return
    problem = driver_problem(driver, runtime)
    if problem:
        raise CudaDriverError(problem)


def _runtime() -> Any:
    try:
        from cuda.bindings import runtime
    except ImportError:  # cuda-python < 12.6 layout
        try:
            from cuda import cudart as runtime  # type: ignore[no-redef]
        except ImportError:
            raise CudaError(
                "cuda-python is not installed; install svsr[tensorrt-cu13] (CUDA 13 driver, R580+) or svsr[tensorrt-cu12] (CUDA 12 driver)."
            ) from None
    return runtime


class CudaApi:
    """A checked, int-handle view of the CUDA runtime for one device."""

    def __init__(self, device: int = 0) -> None:
        self.rt = _runtime()
        self.device = device
        self._check("cudaSetDevice", self.rt.cudaSetDevice(device))

    # -- errors ---------------------------------------------------------------------------------
    def _error(self, call: str, err: Any) -> CudaError:
        name = getattr(err, "name", str(err))
        _, text = self.rt.cudaGetErrorString(err)
        text = text.decode() if isinstance(text, bytes) else str(text)
        return CudaError(f"CUDA call {call} failed with {name} ({text}).")

    def _check(self, call: str, result: Any) -> Any:
        """``result`` is cuda-python's (err, *values) tuple: raise on error, return the values."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise self._error(call, err)
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    # -- device ---------------------------------------------------------------------------------
    def device_count(self) -> int:
        return int(self._check("cudaGetDeviceCount", self.rt.cudaGetDeviceCount()))

    def device_name(self) -> str:
        prop = self._check("cudaGetDeviceProperties", self.rt.cudaGetDeviceProperties(self.device))
        name = prop.name
        return (name.split(b"\0", 1)[0].decode() if isinstance(name, (bytes, bytearray)) else str(name)).strip()

    def compute_capability(self) -> str:
        prop = self._check("cudaGetDeviceProperties", self.rt.cudaGetDeviceProperties(self.device))
        return f"{prop.major}.{prop.minor}"

    def mem_get_info(self) -> tuple[int, int]:
        """(free, total) device bytes."""
        free, total = self._check("cudaMemGetInfo", self.rt.cudaMemGetInfo())
        return int(free), int(total)

    # -- memory ---------------------------------------------------------------------------------
    def malloc(self, nbytes: int) -> int:
        return int(self._check("cudaMalloc", self.rt.cudaMalloc(max(1, int(nbytes)))))

    def free(self, ptr: int) -> None:
        self._check("cudaFree", self.rt.cudaFree(ptr))

    def malloc_host(self, nbytes: int) -> int:
        """Pinned (page-locked) host memory: async copies from it really are asynchronous."""
        return int(self._check("cudaMallocHost", self.rt.cudaMallocHost(max(1, int(nbytes)))))

    def free_host(self, ptr: int) -> None:
        self._check("cudaFreeHost", self.rt.cudaFreeHost(ptr))

    def host_view(self, ptr: int, nbytes: int) -> np.ndarray:
        """A writable uint8 numpy view of ``nbytes`` of pinned host memory at ``ptr``."""
        return np.ctypeslib.as_array((ctypes.c_uint8 * int(nbytes)).from_address(int(ptr)))

    def memset_async(self, ptr: int, value: int, nbytes: int, stream: int) -> None:
        self._check("cudaMemsetAsync", self.rt.cudaMemsetAsync(ptr, value, nbytes, stream))

    def memcpy_htod_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check("cudaMemcpyAsync", self.rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream))

    def memcpy_dtoh_async(self, dst: int, src: int, nbytes: int, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check("cudaMemcpyAsync", self.rt.cudaMemcpyAsync(dst, src, nbytes, kind, stream))

    def memcpy_2d_dtod_async(self, dst: int, dpitch: int, src: int, spitch: int, width: int, height: int, stream: int) -> None:
        """``height`` rows of ``width`` bytes, device to device; rows start every ``dpitch`` / ``spitch`` bytes.

        A window of a tile or a whole-frame buffer (one plane of it): queued on ``stream``, so a
        capture of that stream records it as a memcpy node of the CUDA graph.
        """
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        self._check("cudaMemcpy2DAsync", self.rt.cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, stream))

    # -- streams and events ---------------------------------------------------------------------
    def stream_create(self) -> int:
        """A non-blocking stream (no implicit sync with the legacy default stream)."""
        return int(self._check("cudaStreamCreateWithFlags", self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking)))

    def stream_destroy(self, stream: int) -> None:
        self._check("cudaStreamDestroy", self.rt.cudaStreamDestroy(stream))

    def stream_synchronize(self, stream: int) -> None:
        self._check("cudaStreamSynchronize", self.rt.cudaStreamSynchronize(stream))

    def event_create(self) -> int:
        return int(self._check("cudaEventCreateWithFlags", self.rt.cudaEventCreateWithFlags(self.rt.cudaEventDisableTiming)))

    def event_destroy(self, event: int) -> None:
        self._check("cudaEventDestroy", self.rt.cudaEventDestroy(event))

    def event_record(self, event: int, stream: int) -> None:
        self._check("cudaEventRecord", self.rt.cudaEventRecord(event, stream))

    def event_synchronize(self, event: int) -> None:
        self._check("cudaEventSynchronize", self.rt.cudaEventSynchronize(event))

    def stream_wait_event(self, stream: int, event: int) -> None:
        self._check("cudaStreamWaitEvent", self.rt.cudaStreamWaitEvent(stream, event, 0))

    # -- CUDA graphs ----------------------------------------------------------------------------
    def begin_capture(self, stream: int) -> None:
        # Thread-local mode: only this thread's unsafe calls (e.g. a sync) break the capture, so
        # other threads (video I/O) may keep using CUDA meanwhile.
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._check("cudaStreamBeginCapture", self.rt.cudaStreamBeginCapture(stream, mode))

    def end_capture(self, stream: int) -> int:
        return int(self._check("cudaStreamEndCapture", self.rt.cudaStreamEndCapture(stream)))

    def try_end_capture(self, stream: int) -> tuple[int, CudaError | None]:
        """End a capture whatever happened during it: (the graph or 0, the error or None); never raises.

        What trtexec's endCaptureOnError does: after a failed capture the caller must still end it
        (the stream stays in capture mode otherwise) and destroy any graph it returns; the error
        is cleared from the runtime's last-error state so later calls do not report it again.
        """
        result = self.rt.cudaStreamEndCapture(stream)
        err, *values = result if isinstance(result, tuple) else (result,)
        graph = values[0] if values else None
        handle = int(graph) if graph is not None else 0
        if int(err) == 0:
            return handle, None
        error = self._error("cudaStreamEndCapture", err)
        self.rt.cudaGetLastError()
        return handle, error

    def get_last_error(self) -> CudaError | None:
        """Read and clear the runtime's sticky last error (trtexec checks it after every capture); None when clear."""
        result = self.rt.cudaGetLastError()
        err = result[0] if isinstance(result, tuple) else result
        return None if int(err) == 0 else self._error("cudaGetLastError", err)

    def graph_instantiate(self, graph: int) -> int:
        return int(self._check("cudaGraphInstantiate", self.rt.cudaGraphInstantiate(graph, 0)))

    def graph_launch(self, graph_exec: int, stream: int) -> None:
        self._check("cudaGraphLaunch", self.rt.cudaGraphLaunch(graph_exec, stream))

    def graph_destroy(self, graph: int) -> None:
        self._check("cudaGraphDestroy", self.rt.cudaGraphDestroy(graph))

    def graph_exec_destroy(self, graph_exec: int) -> None:
        self._check("cudaGraphExecDestroy", self.rt.cudaGraphExecDestroy(graph_exec))


def cuda_device_status() -> tuple[bool, str]:
    """(True, "<gpu name>") when cuda-python imports and a CUDA device is visible, else (False, why)."""
    try:
        rt = _runtime()
    except CudaError as exc:
        return False, str(exc)
    err, count = rt.cudaGetDeviceCount()
    if int(err) != 0:
        try:
            versions: tuple[int, int] | None = cuda_versions()
        except (CudaError, ValueError, TypeError):
            versions = None
        if versions is not None and versions[0] == 0:
            return False, "no NVIDIA driver is installed (no GPU for CUDA)"
        problem = driver_problem(*versions) if versions is not None else None
        if problem:
            return False, problem.rstrip(".")
        _, text = rt.cudaGetErrorString(err)
        text = text.decode() if isinstance(text, bytes) else str(text)
        return False, f"no usable NVIDIA GPU: CUDA says {text}"
    if count < 1:
        return False, "no NVIDIA GPU is visible to CUDA"
    try:
        return True, CudaApi(0).device_name()
    except CudaError as exc:
        return False, str(exc)
