"""The torch-free rules every layer shares (the standard library, numpy and jsonschema only, even lazily).

graphs (I/O specs), manifest (schema and checks), paths (what a build folder may name), sweeps
(sweep order), scheduler (step coefficients and the steps check), noise (philox and numpy noise
sources), sizes and frames (size, padding and frame rules), errors (user-facing errors), precision
(the precision type), codecs (the codec/container table), backends (backend options),
video_options (how a video is upscaled, declared once), profiles and engine_records (TensorRT
profiles, build records, cache keys and the one engine verdict). Platform adapters (CUDA,
TensorRT, the torch noise source) live on the device floor, svsr/device.
"""
