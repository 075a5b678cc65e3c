"""The device floor: platform adapters that engines and runtime both need, each imported only when asked for.

cuda (the few CUDA runtime calls through cuda-python, and the driver-vs-runtime rule), tensorrt
(the one way svsr imports TensorRT, full or lean), noise (sources by name, the torch one included).
Nothing here is imported by ``import svsr.device``: import the module you need.
"""
