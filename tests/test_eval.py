"""svsr-eval and svsr.api.evaluate: fidelity against scikit-image, mismatches, offline LPIPS, tOF, JSON and plot."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from svsr.api import evaluate
from svsr.evaluate import main as eval_main
from svsr.quality import luma, perceptual_metrics, resize_bicubic, warp
from tests.conftest import read_png_folder, write_png_folder
from tests.support.media import make_video


def textured_frames(num_frames: int, size: int, shift: int = 0, seed: int = 0) -> list[np.ndarray]:
    """A smooth random texture (so motion is well defined), moved ``shift`` px right per frame."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))
    return [np.roll(texture, shift * i, axis=1) for i in range(num_frames)]


def degraded(frames: list[np.ndarray], seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8) for f in frames]


class TranslationFlowDouble:
    """Test double of the flow graph: one global translation per pair, by phase correlation."""

    def __call__(self, pairs):
        flows = []
        for frame, previous in pairs:
            a, b = (np.fft.fft2(luma(f)) for f in (frame, previous))
            cross = a * np.conj(b)
            peak = np.unravel_index(np.argmax(np.abs(np.fft.ifft2(cross / (np.abs(cross) + 1e-9)))), cross.shape)
            dy, dx = ((p + s // 2) % s - s // 2 for p, s in zip(peak, cross.shape))
            # frame = previous moved by (dx, dy): a pixel of frame is found in previous at -(dx, dy)
            flows.append(np.stack([np.full(frame.shape[:2], -dx, np.float32), np.full(frame.shape[:2], -dy, np.float32)]))
        return flows


def test_psnr_and_ssim_equal_scikit_images_on_rgb_and_luma(tmp_path):
    from skimage.color import rgb2ycbcr
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    reference = textured_frames(3, 48, shift=2)
    output = write_png_folder(tmp_path / "out", degraded(reference))
    write_png_folder(tmp_path / "ref", reference)
    result = evaluate(output, tmp_path / "ref", perceptual=False)
    ssim_options = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    out_frames = read_png_folder(output)
    assert len(result.per_frame) == 3
    for row, out, ref in zip(result.per_frame, out_frames, reference):
        y_out, y_ref = rgb2ycbcr(out)[..., 0], rgb2ycbcr(ref)[..., 0]
        assert row["psnr_rgb"] == pytest.approx(peak_signal_noise_ratio(ref, out, data_range=255), abs=1e-9)
        assert row["psnr_y"] == pytest.approx(peak_signal_noise_ratio(y_ref, y_out, data_range=255), abs=1e-9)
        assert row["ssim_rgb"] == pytest.approx(structural_similarity(ref, out, channel_axis=2, **ssim_options), abs=1e-9)
        assert row["ssim_y"] == pytest.approx(structural_similarity(y_ref, y_out, **ssim_options), abs=1e-9)
    assert result.mean["psnr_y"] == pytest.approx(np.mean([r["psnr_y"] for r in result.per_frame]))
    assert "BT.601" in result.conventions["fidelity"] and "tOF and warping error skipped" in " ".join(result.notes)


def test_a_video_against_a_frame_folder_of_the_same_frames_is_perfect(tmp_path):
    frames = textured_frames(3, 48, shift=3)
    video = make_video(tmp_path / "out.mkv", frames, codec="ffv1", pix_fmt="bgr0")
    write_png_folder(tmp_path / "ref", frames)
    rc = eval_main([str(video), str(tmp_path / "ref"), "--no-perceptual", "--json", str(tmp_path / "q.json")])
    data = json.loads((tmp_path / "q.json").read_text())
    assert rc == 0 and data["frames"] == 3
    assert data["mean"]["psnr_rgb"] is None  # infinite: identical frames
    assert data["mean"]["ssim_rgb"] == pytest.approx(1.0) and data["mean"]["ssim_y"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "case, expected",
    [("count", "has 3 frames but"), ("size", "has 48x48 frames but"), ("input", "--input must be the reference shrunk 4x")],
)
def test_mismatched_clips_are_one_sentence_a_non_zero_exit_and_nothing_written(tmp_path, capsys, case, expected):
    out = write_png_folder(tmp_path / "out", textured_frames(3, 48))
    ref_frames = {"count": textured_frames(4, 48), "size": textured_frames(3, 64)}.get(case, textured_frames(3, 48))
    ref = write_png_folder(tmp_path / "ref", ref_frames)
    extra = ["--input", str(write_png_folder(tmp_path / "lr", textured_frames(3, 40)))] if case == "input" else []
    rc = eval_main([str(out), str(ref), *extra, "--no-perceptual", "--json", str(tmp_path / "q.json"), "--plot", str(tmp_path / "q.png")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and expected in err
    assert len(err.splitlines()) == 1 and err.count(". ") == 0 and err.endswith(".")
    if case != "input":
        assert str(out) in err and str(ref) in err
    assert not (tmp_path / "q.json").exists() and not (tmp_path / "q.png").exists()


def test_the_console_script_names_both_clips_of_different_sizes(tmp_path):
    out = write_png_folder(tmp_path / "out", textured_frames(2, 48))
    ref = write_png_folder(tmp_path / "ref", textured_frames(2, 64))
    done = subprocess.run([sys.executable, "-m", "svsr.evaluate", str(out), str(ref), "--no-perceptual"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == f"svsr-eval: error: {out} has 48x48 frames but {ref} has 64x64; compare clips of the same size."


def test_lpips_and_dists_without_cached_weights_are_one_line_each_not_a_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    metrics, notes = perceptual_metrics()
    assert metrics == [] and len(notes) == 2
    lpips_note = next(n for n in notes if n.startswith("LPIPS"))
    assert str(tmp_path / "empty-torch-home" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth") in lpips_note
    assert "\n" not in lpips_note and not (tmp_path / "empty-torch-home").exists()  # nothing downloaded

    frames = textured_frames(2, 48)
    out, ref = write_png_folder(tmp_path / "out", degraded(frames)), write_png_folder(tmp_path / "ref", frames)
    assert eval_main([str(out), str(ref)]) == 0
    printed = capsys.readouterr().out
    assert lpips_note in printed.splitlines() and "psnr_rgb" in printed


class PerceptualModelDouble:
    """Test double of a torchmetrics metric: records what it is given, scores the mean absolute difference."""

    def __init__(self):
        self.seen = []

    def reset(self):
        self.seen.clear()

    def update(self, output, reference):
        self.seen.append((output, reference))

    def compute(self):
        output, reference = self.seen[-1]
        return (output - reference).abs().mean()


def test_with_cached_backbones_lpips_and_dists_are_measured_per_frame(tmp_path, monkeypatch):
    from svsr.quality import hub_checkpoints, measure

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    hub_checkpoints().mkdir(parents=True)
    for name in ("alexnet-owt-7be5be79.pth", "vgg16-397923af.pth"):
        (hub_checkpoints() / name).write_bytes(b"stands in for the cached backbone")
    doubles = {}
    metrics, notes = perceptual_metrics(loader=lambda name, _: doubles.setdefault(name, PerceptualModelDouble()))
    assert [m.name for m in metrics] == ["lpips", "dists"] and notes == []

    frames = textured_frames(2, 48)
    out, ref = write_png_folder(tmp_path / "out", degraded(frames)), write_png_folder(tmp_path / "ref", frames)
    result = measure(out, ref, perceptual_loader=lambda: (metrics, notes))
    given_output, given_reference = doubles["lpips"].seen[-1]
    assert tuple(given_output.shape) == (1, 3, 48, 48) and 0.0 <= float(given_output.min()) and float(given_reference.max()) <= 1.0
    expected = np.mean(np.abs(read_png_folder(out)[1] / 255.0 - frames[1] / 255.0))
    assert result.per_frame[1]["lpips"] == pytest.approx(expected, rel=1e-5) and result.mean["dists"] > 0
    assert "perceptual" in result.conventions


def test_without_torchmetrics_the_perceptual_metrics_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics", None)  # import torchmetrics raises ImportError
    assert perceptual_metrics() == ([], ["LPIPS, DISTS skipped: they need torchmetrics and torchvision; pip install 'svsr[eval]'."])


def test_tof_is_zero_for_identical_clips_and_not_for_moved_ones_with_the_builds_flow_graph(tmp_path, tiny_build):
    """Random weights: only what holds for any flow graph (same frames, same flows; moved frames, other flows)."""
    reference = write_png_folder(tmp_path / "ref", textured_frames(3, 128))
    same = write_png_folder(tmp_path / "same", textured_frames(3, 128))
    moved = write_png_folder(tmp_path / "moved", textured_frames(3, 128, shift=6))
    json_path, plot_path = tmp_path / "q.json", tmp_path / "q.png"
    assert eval_main([str(same), str(reference), "--model", str(tiny_build), "--no-perceptual", "--json", str(json_path), "--plot", str(plot_path)]) == 0
    data = json.loads(json_path.read_text())
    assert [row["tof"] for row in data["per_frame"]] == [None, 0.0, 0.0] and data["mean"]["tof"] == 0.0
    assert data["per_frame"][0]["warping_error"] is None and data["per_frame"][1]["warping_error"] >= 0.0
    assert set(data["mean"]) == {"psnr_rgb", "psnr_y", "ssim_rgb", "ssim_y", "tof", "warping_error"}
    assert "temporal" in data["conventions"]
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(plot_path).size[0] > 100

    moved_result = evaluate(moved, reference, model=tiny_build, perceptual=False)
    assert all(row["tof"] > 0 for row in moved_result.per_frame[1:])


def test_tof_grows_with_the_motion_error_and_the_warping_error_follows_the_true_flow(tmp_path):
    reference = write_png_folder(tmp_path / "ref", textured_frames(4, 64, shift=2))
    tofs = []
    for shift in (2, 4, 7):
        output = write_png_folder(tmp_path / f"out{shift}", textured_frames(4, 64, shift=shift))
        tofs.append(evaluate(output, reference, flow=TranslationFlowDouble(), perceptual=False).mean["tof"])
    assert tofs[0] == 0.0 and 0 < tofs[1] < tofs[2]
    assert tofs[1] == pytest.approx(2.0 / 2) and tofs[2] == pytest.approx(5.0 / 2)  # the x error, averaged with y's 0

    # the output moves exactly as the reference: out_t-1 warped by the reference's flow is out_t
    steady = evaluate(reference, reference, flow=TranslationFlowDouble(), perceptual=False)
    assert all(row["warping_error"] == pytest.approx(0.0, abs=1e-12) for row in steady.per_frame[1:])
    flicker = write_png_folder(tmp_path / "flicker", degraded(textured_frames(4, 64, shift=2)))
    assert evaluate(flicker, reference, flow=TranslationFlowDouble(), perceptual=False).mean["warping_error"] > 1e-3


def test_warp_by_a_whole_pixel_flow_moves_the_image_and_marks_what_came_from_outside():
    image = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    flow = np.stack([np.full((5, 6), -1.0), np.zeros((5, 6))])
    warped, inside = warp(image, flow)
    assert np.array_equal(warped[:, 1:], image[:, :-1].astype(float)) and not inside[:, 0].any() and inside[:, 1:].all()


def test_input_adds_the_bicubic_baseline_measured_the_same_way(tmp_path):
    reference = textured_frames(2, 128)
    lr = [resize_bicubic(f, 32, 32) for f in reference]
    out = write_png_folder(tmp_path / "out", degraded(reference))
    result = evaluate(out, write_png_folder(tmp_path / "ref", reference), input=write_png_folder(tmp_path / "lr", lr), perceptual=False)
    assert result.bicubic is not None and len(result.bicubic["per_frame"]) == 2
    assert set(result.bicubic["mean"]) == set(result.mean)
    assert 0 < result.bicubic["mean"]["ssim_rgb"] < 1 and "bicubic" in result.summary()


def test_the_quality_room_reaches_no_engines_export_reference_api_or_cli_and_no_torch_at_import():
    from tests.test_layers import PACKAGE, reachable

    forbidden = ("svsr.engines", "svsr.export", "svsr.reference", "svsr.api", "svsr.cli", "svsr.runtime.jobs")
    paths = sorted((PACKAGE / "quality").rglob("*.py"))
    assert len(paths) >= 6
    found = [f"{p.name}: {m} via {via}" for p in paths for m, via in reachable(p) if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert found == []
    at_import = [f"{p.name}: {m}" for p in paths for m, _ in reachable(p, True) if m.split(".")[0] in ("torch", "torchvision", "torchmetrics", "skimage", "matplotlib")]
    assert at_import == []
