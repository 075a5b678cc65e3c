"""The video room: probe, read, write (with audio copy) and stitch videos and frame folders (PyAV, Pillow).

Its modules, one job each: ``probe`` (what an input is), ``read`` (FrameReader), ``write``
(FrameWriter), ``stitch`` (join shot segments) with ``joint`` (their time line), ``audio`` (audio
copy), ``containers`` (opening files with FFmpeg), ``images`` (frame folders), ``orientation``
(display matrices), ``outputs`` (output names and checks) and ``encoders`` (which codecs of
:data:`svsr.contract.codecs.CODECS` this machine encodes). Code outside the room imports from here.
"""

from svsr.runtime.video.encoders import available_codecs, encoder_available
from svsr.runtime.video.audio import audio_problem
from svsr.runtime.video.compare import bicubic_upscale, side_by_side, write_comparison
from svsr.runtime.video.outputs import VIDEO_SUFFIXES, OutputTarget, check_output, input_kind, output_kind, output_path_for, output_rule
from svsr.runtime.video.probe import VideoInfo, probe
from svsr.runtime.video.read import FrameReader
from svsr.runtime.video.stitch import stitch_segments
from svsr.runtime.video.write import FrameWriter

__all__ = [
    "VIDEO_SUFFIXES",
    "FrameReader",
    "FrameWriter",
    "OutputTarget",
    "VideoInfo",
    "audio_problem",
    "bicubic_upscale",
    "available_codecs",
    "check_output",
    "encoder_available",
    "input_kind",
    "output_kind",
    "output_path_for",
    "output_rule",
    "probe",
    "side_by_side",
    "stitch_segments",
    "write_comparison",
]
