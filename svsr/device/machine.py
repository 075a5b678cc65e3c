"""This machine as engines see it: the one :class:`MachineEnv` every engine verdict is made against.

``machine_env()`` asks TensorRT (full first, else the lean runtime) and cuda-python once; the
backend chooser, the TensorRT loader and the doctor all judge records with
``svsr.contract.engine_records.problems(record, env)``.
"""

from __future__ import annotations

from typing import Any

from svsr.contract.engine_records import MachineEnv
from svsr.contract.errors import SvsrError
from svsr.device import cuda as cuda_module
from svsr.device.tensorrt import import_tensorrt_runtime

__all__ = ["machine_env", "machine_env_or_reason"]


def machine_env(device: int = 0, *, trt: Any = None, lean: bool | None = None, cuda: Any = None) -> MachineEnv:
    """The TensorRT, GPU and driver of this machine; SvsrError (one sentence) where TensorRT or a GPU is missing.

    ``trt``/``lean``/``cuda``: a TensorRT module, its flavour and a CudaApi already at hand (tests
    pass recording doubles); by default they are imported and opened here.
    """
    if trt is None:
        found = import_tensorrt_runtime()
        trt, lean = found.module, found.lean if lean is None else lean
    cuda = cuda if cuda is not None else cuda_module.CudaApi(device)  # looked up now: tests stand a double in
    try:
        driver = cuda_module.format_cuda_version(cuda_module.cuda_versions()[0])
    except cuda_module.CudaError:
        driver = None
    return MachineEnv(str(trt.__version__), bool(lean), cuda.device_name(), cuda.compute_capability(), driver)


def machine_env_or_reason(device: int = 0) -> tuple[MachineEnv | None, str]:
    """(the MachineEnv, "") where TensorRT and a GPU are usable, else (None, the sentence saying why not)."""
    try:
        return machine_env(device), ""
    except SvsrError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a driver or library failure while asking: TensorRT cannot run here
        return None, " ".join(str(exc).split()) or type(exc).__name__
