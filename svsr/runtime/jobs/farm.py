"""Shots of many inputs over a Ray cluster: one actor per GPU (or CPU workers for ONNX Runtime) (torch-free).

Every actor opens the build folder once and then runs shots off one shared queue with the same code
as a run in this process (``svsr.runtime.jobs.runner.run_shot``). A shot is resumable from its checkpoint in the work folder, so when a worker dies
(process killed, node lost) Ray restarts the actor and retries the shot, which continues where its
last completed timestep left it. The work folders (beside the outputs) and the inputs must
therefore be the same paths on every node: a shared file system such as NFS.

One writer per shot: a retried shot whose first worker is still alive (a node cut off from the
cluster but still running, say) must not write the same work folder and segment. The shot's work
folder lock (``svsr.runtime.jobs.lock``; flock, which NFS v4 carries between nodes) covers it, and the
retried task *waits* for that lock rather than failing: the first worker either finishes the
segment (the retried task then finds it and returns) or dies (the kernel or the NFS lease releases
its lock and the retried task resumes from the checkpoint). Failing instead would fail the whole
run for a shot that is being done.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from svsr.contract.backends import ORT, BackendLike, backend_options
from svsr.contract.errors import InputError, MissingDependencyError, SvsrError
from svsr.contract.video_options import VideoOptions
from svsr.runtime.jobs import lock
from svsr.runtime.jobs.job import CRASH_ONCE_VARIABLE, CRASH_VARIABLE, InputPlan
from svsr.runtime.jobs.resume import segment_damage
from svsr.runtime.jobs.runner import backend_name, run_shot
from svsr.runtime.jobs.shots import Shot

Report = Callable[[str], None]
# environment a worker needs to behave like this process (test hooks included, so tests can kill workers)
_FORWARDED = ("HF_HUB_OFFLINE", "OMP_NUM_THREADS", CRASH_VARIABLE, CRASH_ONCE_VARIABLE)


@dataclass(frozen=True)
class FarmSettings:
    """Where and how wide: ``address`` is ``local`` (start Ray here), ``auto`` (join the running cluster) or a Ray address."""

    address: str = "local"
    workers: int | None = None  # default: one per GPU (TensorRT), else one per CPU of the cluster
    cpus_per_worker: int = 1  # ONNX Runtime threads of a CPU worker


class ShotWorker:
    """A Ray actor: the build folder opened once, then any number of shots (the in-process shot code)."""

    def __init__(self, build_dir: str, backend: BackendLike, precision: Any) -> None:
        from svsr.runtime.sampling import open_sampler

        self.build_dir = Path(build_dir)
        self.sampler = open_sampler(self.build_dir, backend=backend, precision=precision)

    def pid(self) -> int:
        return os.getpid()

    def run(self, plan: InputPlan, shot: Shot, options: VideoOptions) -> dict[str, Any]:
        start = time.perf_counter()
        shot_lock = plan.shot_work(shot) / lock.LOCK_NAME
        # waits while another worker (the first try of a retried task) holds the shot; the shot code then re-enters the lock
        lock.acquire(shot_lock, f"shot {shot.index + 1} of {plan.input.name}", "wait for it", wait=True)
        try:
            run_shot(self.sampler, plan, shot, options, build_dir=self.build_dir)
        finally:
            lock.release(shot_lock)
        return {"input": str(plan.input), "shot": shot.index, "seconds": time.perf_counter() - start, "pid": os.getpid(),
                "backend": backend_name(self.sampler)}  # fmt: skip


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("--ray needs Ray; install it with pip install 'svsr[ray]'.") from None
    return ray


def _connect(ray: Any, settings: FarmSettings) -> bool:
    """Connect (or start a local instance); True when this call started Ray and must shut it down."""
    if ray.is_initialized():
        return False
    env = {k: os.environ[k] for k in _FORWARDED if k in os.environ}
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "runtime_env": {"env_vars": env}}
    try:
        if settings.address == "local":
            ray.init(**kwargs)
        else:
            ray.init(address=settings.address, **kwargs)
    except ConnectionError as exc:
        raise InputError(
            f"cannot reach a Ray cluster at {settings.address!r} ({exc}); start one with `ray start --head` or use --ray local."
        ) from None
    return True


def run_shots_on_ray(
    inputs: Sequence[tuple[InputPlan, VideoOptions]],
    *,
    build_dir: Path,
    backend: BackendLike,
    precision: Any,
    settings: FarmSettings,
    report: Report = lambda _m: None,
    on_shot: Callable[[dict[str, Any]], None] | None = None,
) -> str:
    """Run every unfinished shot of the planned inputs on Ray actors; returns the backend name they ran."""
    chosen = backend_options(backend)
    if chosen.name == "reference":
        raise InputError("--ray runs the exported graphs; use --backend auto, ort or trt with it.")
    if any(not isinstance(options.noise, str) for _, options in inputs):
        raise InputError("Ray workers draw noise by name; give noise='philox', 'numpy' or 'torch' instead of a NoiseSource object.")
    # a segment counts as finished when it matches its record; a damaged one goes to a worker, which says so and redoes it
    tasks = [(plan, shot, options) for plan, options in inputs for shot in plan.shots if segment_damage(plan.segment_path(shot)) is not None]
    if not tasks:
        return chosen.name
    ray = import_ray()
    from ray.util import ActorPool

    started = _connect(ray, settings)
    try:
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        use_gpu = chosen.name == "trt" or (chosen.name == "auto" and gpus > 0)
        if chosen.name == "trt" and gpus == 0:
            raise InputError("--backend trt with --ray needs GPUs in the Ray cluster, and it reports none; use --backend ort.")
        if use_gpu:
            count, per_actor = settings.workers or gpus, {"num_gpus": 1, "num_cpus": 1}
        else:
            count = settings.workers or max(1, cpus // settings.cpus_per_worker)
            per_actor = {"num_cpus": settings.cpus_per_worker}
            if chosen.name in ("auto", "ort"):
                chosen = ORT(threads=settings.cpus_per_worker)
        count = max(1, min(count, len(tasks)))
        report(f"svsr-run: {len(tasks)} shot(s) on {count} Ray worker(s) ({'GPU' if use_gpu else 'CPU'}, backend {chosen.name})")
        actor = ray.remote(max_restarts=-1, max_task_retries=-1, **per_actor)(ShotWorker)
        workers = [actor.remote(str(build_dir), chosen, precision) for _ in range(count)]
        pool = ActorPool(workers)
        try:
            for record in pool.map_unordered(lambda w, task: w.run.remote(*task), tasks):
                if on_shot is not None:
                    on_shot(record)
        except ray.exceptions.RayTaskError as exc:  # a shot refused (bad input...): its own sentence
            cause = getattr(exc, "cause", None)
            if isinstance(cause, SvsrError):
                raise cause from None
            raise
        for w in workers:
            ray.kill(w)
        return chosen.name
    finally:
        if started:
            ray.shutdown()
