"""Video rooms: probe, read, write (with audio copy) and stitch videos and frame folders (PyAV, Pillow)."""

from svsr.runtime.video.probe import VIDEO_SUFFIXES, VideoInfo, output_path_for, probe
from svsr.runtime.video.read import FrameReader
from svsr.runtime.video.stitch import stitch_segments
from svsr.runtime.video.write import FrameWriter

__all__ = ["VIDEO_SUFFIXES", "FrameReader", "FrameWriter", "VideoInfo", "output_path_for", "probe", "stitch_segments"]
