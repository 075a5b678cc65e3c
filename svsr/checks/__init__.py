"""svsr-doctor's checks, each a small function returning a :class:`Check` (name, OK / WARN / FAIL, value, fix).

``machine`` (driver, CUDA runtime, TensorRT and its wheel's CUDA major, GPU, ONNX Runtime, PyAV's
encoders, Ray, PySceneDetect), ``pipeline`` (the tiny preset end to end on ONNX Runtime against the
reference) with ``tensorrt_clip`` and ``per_graph`` (engines built here, compared per graph through
polygraphy, then the clip eagerly and with CUDA graphs), ``build_folder`` (``--model``'s engine
records against this machine). They reach svsr through ``svsr.api``, the contract and the device
floor only; svsr/doctor.py runs them and writes the report.
"""

from svsr.checks.check import FAIL, OK, STATUSES, WARN, Check

__all__ = ["FAIL", "OK", "STATUSES", "WARN", "Check"]
