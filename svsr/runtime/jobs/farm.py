"""Shots of many inputs over a Ray cluster: one actor per GPU (or CPU workers for ONNX Runtime) (torch-free).

Every actor opens the build folder once and then runs shot jobs (``svsr.runtime.jobs.job.ShotJob``) off
one shared queue. A shot is resumable from its checkpoint in the work folder, so when a worker dies
(process killed, node lost) Ray restarts the actor and retries the shot, which continues where its
last completed timestep left it. The work folders (beside the outputs) and the inputs must
therefore be the same paths on every node: a shared file system such as NFS.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from svsr.contract.errors import InputError, MissingDependencyError, SvsrError
from svsr.device.noise import make_noise
from svsr.runtime.jobs.job import CRASH_ONCE_VARIABLE, CRASH_VARIABLE, InputPlan, JobOptions, ShotJob
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
    """A Ray actor: the build folder opened once, then any number of shots."""

    def __init__(self, build_dir: str, backend: str, precision: Any, threads: int) -> None:
        from svsr.runtime.sampling import open_sampler

        self.build_dir = Path(build_dir)
        self.sampler, self.label = open_sampler(self.build_dir, backend=backend, precision=precision, threads=threads)

    def pid(self) -> int:
        return os.getpid()

    def run(self, plan: InputPlan, shot: Shot, noise_kind: str, seed: int, options: JobOptions) -> dict[str, Any]:
        start = time.perf_counter()
        job = ShotJob(self.sampler, plan, shot, lambda: make_noise(noise_kind, seed), options, build_dir=self.build_dir, label=self.label)
        job.run()
        return {"input": str(plan.input), "shot": shot.index, "seconds": time.perf_counter() - start, "pid": os.getpid(), "backend": self.label}


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
    plans: Sequence[InputPlan],
    *,
    build_dir: Path,
    backend: str,
    precision: Any,
    noise_kind: str,
    seed: int,
    options: JobOptions,
    settings: FarmSettings,
    report: Report = lambda _m: None,
    on_shot: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every unfinished shot of ``plans`` on Ray actors; return one record per shot run."""
    ray = import_ray()
    from ray.util import ActorPool

    tasks = [(plan, shot) for plan in plans for shot in plan.shots if not plan.segment_path(shot).exists()]
    if not tasks:
        return []
    started = _connect(ray, settings)
    try:
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        use_gpu = backend == "trt" or (backend == "auto" and gpus > 0)
        if backend == "trt" and gpus == 0:
            raise InputError("--backend trt with --ray needs GPUs in the Ray cluster, and it reports none; use --backend ort.")
        if use_gpu:
            count, per_actor = settings.workers or gpus, {"num_gpus": 1, "num_cpus": 1}
        else:
            count = settings.workers or max(1, cpus // settings.cpus_per_worker)
            per_actor = {"num_cpus": settings.cpus_per_worker}
            backend = "ort" if backend == "auto" else backend
        count = max(1, min(count, len(tasks)))
        report(f"svsr-run: {len(tasks)} shot(s) on {count} Ray worker(s) ({'GPU' if use_gpu else 'CPU'}, backend {backend})")
        actor = ray.remote(max_restarts=-1, max_task_retries=-1, **per_actor)(ShotWorker)
        workers = [actor.remote(str(build_dir), backend, precision, settings.cpus_per_worker) for _ in range(count)]
        pool = ActorPool(workers)
        records = []
        try:
            for record in pool.map_unordered(lambda w, task: w.run.remote(task[0], task[1], noise_kind, seed, options), tasks):
                records.append(record)
                if on_shot is not None:
                    on_shot(record)
        except ray.exceptions.RayTaskError as exc:  # a shot refused (bad input...): its own sentence
            cause = getattr(exc, "cause", None)
            if isinstance(cause, SvsrError):
                raise cause from None
            raise
        for w in workers:
            ray.kill(w)
        return records
    finally:
        if started:
            ray.shutdown()
