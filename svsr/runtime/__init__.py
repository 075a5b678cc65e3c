"""Torch-free runtime, three rooms with one door each:

* :mod:`svsr.runtime.sampling`: the bidirectional schedule over exported graphs (sampler, clip
  store, backends, memory plan, backend choice);
* :mod:`svsr.runtime.video`: probe, read, write, audio copy and stitch of videos and frame folders;
* :mod:`svsr.runtime.jobs`: the video job (shots, resume, Ray farm) on top of the other two.

Code outside a room imports the room's package, never its modules.
"""
