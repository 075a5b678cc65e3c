"""The torch-free rules every layer shares (imports numpy and jsonschema, never another svsr package).

graphs (I/O specs), manifest (schema and checks), sweeps (sweep order), scheduler (DDPM step
coefficients), noise (noise sources), sizes and frames (size, padding and frame rules), errors
(user-facing errors), precision (the precision type), profiles and engine_records (TensorRT
profiles, build records, cache keys as data and checks), cuda (the CUDA device query).
"""
