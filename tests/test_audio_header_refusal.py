"""Audio a muxer accepts as a stream but refuses at the header (.mov with opus or flac) is found before any work."""

from __future__ import annotations

import numpy as np
import pytest

from svsr.runtime.video import audio_problem
from tests.support.media import make_video


@pytest.mark.parametrize("codec", ["libopus", "flac"])
def test_a_header_refusal_is_found_before_any_work(tmp_path, codec):
    source = make_video(tmp_path / "in.mkv", [np.zeros((32, 32, 3), np.uint8)] * 3, codec="ffv1", pix_fmt="yuv420p", audio=codec)
    problem = audio_problem(source, tmp_path / "out.mov", True)
    assert problem is not None and "cannot hold" in problem and ".mov" in problem
    assert audio_problem(source, tmp_path / "out.mkv", True) is None  # Matroska holds both
    assert not (tmp_path / "out.mov").exists()
