"""svsr-export: ONNX graphs that match the PyTorch modules and the reference, with a valid manifest."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from svsr.contract.errors import ManifestError
from svsr.export.exporter import export_all, sample_inputs
from svsr.export.trt_lint import lint_model
from svsr.export.wrappers import NormStats, SharedGroupNorm, build_wrapper, pad_to_multiple, stats_vector, traceable_warp
from svsr.contract.graphs import GRAPH_NAMES, GRAPHS, NORM_STATS_STRIDE
from svsr.contract.manifest import SCHEMA_VERSION, load_manifest, stats_sizes, validate_manifest
from svsr.reference.flow import scaled_flow
from svsr.device.noise import TorchNoise
from tests.support.noise import RecordingNoise
from svsr.reference.warp import warp
from svsr.contract.scheduler import step_coefficients
from tests.conftest import random_frames

# Tolerances from the issue; measured maxima on the tiny preset are ~1e-6 (denoise, guide_decode, warp,
# decode, the stats graphs) and ~2e-5 px (flow; ~6e-5 px at x1, where the flow is multiplied by 4); blend
# is one multiply-add.
TOLERANCE = {"denoise": 1e-4, "denoise_stats": 1e-4, "guide_decode": 1e-4, "decode_stats": 1e-4, "warp": 1e-4, "decode": 1e-4,
             "flow": 1e-3, "flow_x2": 1e-3, "flow_x1": 1e-3, "blend": 1e-6}  # fmt: skip
RESOLUTIONS = [(36, 44), (40, 52), (48, 64)]  # LR sizes; the graphs were traced at 36x44
# RAFT needs >= 128 px per side of what it sees: x2 from 64 px LR, x1 from 128 (traced at 68x76 / 132x140);
# x1's sizes mix sides that need its pad to 8 (h % 8 == 4) and sides that do not
FLOW_RESOLUTIONS = {"flow_x2": [(68, 76), (64, 72), (80, 100)], "flow_x1": [(132, 140), (128, 136), (136, 148)]}


@pytest.fixture(scope="module")
def build(tmp_path_factory, tiny_reference):
    out = tmp_path_factory.mktemp("build")
    export_all(tiny_reference.components, out, report=lambda _: None)
    return out


@pytest.fixture(scope="module")
def stats(tiny_reference):
    """The tiny preset's statistics lengths (norm_stats of denoise / guide_decode / decode)."""
    return tiny_reference.norm_stats_sizes()


@pytest.fixture(scope="module")
def sessions(build):
    manifest = load_manifest(build)
    return {name: ort.InferenceSession(str(build / manifest["graphs"][name]["file"]), providers=["CPUExecutionProvider"]) for name in GRAPH_NAMES}


@pytest.mark.parametrize("name", GRAPH_NAMES)
@pytest.mark.parametrize("size", range(len(RESOLUTIONS)))
def test_graph_matches_pytorch_module(tiny_reference, sessions, stats, name, size):
    module = build_wrapper(name, tiny_reference.components)
    height, width = FLOW_RESOLUTIONS.get(name, RESOLUTIONS)[size]
    inputs = sample_inputs(name, height, width, seed=3, stats=stats)
    with torch.no_grad():
        expected = module(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = sessions[name].run(None, {spec.name: x.numpy() for spec, x in zip(GRAPHS[name].inputs, inputs)})
    for out, ref in zip(got, expected):
        assert out.shape == tuple(ref.shape)
        assert np.abs(out - ref.numpy()).max() <= TOLERANCE[name]


def test_batch_of_two_clips_runs_in_one_call(sessions, stats):
    z, norm_stats, _ = sample_inputs("decode", 36, 44, batch=2, stats=stats)
    own = {"shared_norm": np.zeros(1, np.float32)}
    (rgb,) = sessions["decode"].run(None, {"z": z.numpy(), "norm_stats": norm_stats.numpy(), **own})
    (single,) = sessions["decode"].run(None, {"z": z[1:].numpy(), "norm_stats": norm_stats[1:].numpy(), **own})
    assert rgb.shape == (2, 3, 144, 176)
    np.testing.assert_allclose(rgb[1:], single, atol=1e-5)


def test_wrappers_equal_the_reference_building_blocks(tiny_reference, stats):
    """With shared_norm 0 (whatever norm_stats holds) the graphs are the reference's plain-GroupNorm maths."""
    ref, c = tiny_reference, tiny_reference.components
    x0, vae_stats, _ = sample_inputs("guide_decode", 40, 52, seed=1, stats=stats)
    _, flow = sample_inputs("warp", 40, 52, seed=1)
    own = torch.zeros(1)
    with torch.no_grad():
        image = build_wrapper("guide_decode", c)(x0, vae_stats, own)
        # ~1e-6: the graph's GroupNorm is written out (mean, then the centred variance), torch's is one kernel
        torch.testing.assert_close(image, ref.decode_latent(x0), atol=1e-5, rtol=0)
        # schema 1's guide graph is warp(guide_decode(x0), flow)
        torch.testing.assert_close(build_wrapper("warp", c)(image, flow), ref.guidance(x0, flow), atol=1e-5, rtol=0)
        torch.testing.assert_close(build_wrapper("decode", c)(x0, vae_stats, own), ref.decode_output(x0), atol=1e-5, rtol=0)
        z, lr, guidance, _, _, _, noise, history, unet_stats, _ = sample_inputs("denoise", 40, 52, seed=2, stats=stats)
        c.scheduler.set_timesteps(4)
        t = c.scheduler.timesteps[1]
        coeffs = torch.from_numpy(step_coefficients(dict(c.scheduler.config), c.scheduler.alphas_cumprod.numpy(), 4)[1].coeffs)
        assert coeffs.shape == (8,) and coeffs[6] == 0 and coeffs[7] == 0  # DDPM reads neither the output twice nor a history
        denoise = build_wrapper("denoise", c)
        for scale, reference_guidance in ((0.0, None), (1.0, guidance)):
            z_prev, x0_graph = denoise(z, lr, guidance, torch.tensor([scale]), torch.tensor([float(t)]), coeffs, noise, history, unet_stats, own)
            output = ref.predict(z, lr, t, reference_guidance)
            want_prev, want_x0 = ref.ddpm_step(output, t, z, noise)
            torch.testing.assert_close(z_prev, want_prev, atol=1e-5, rtol=0)
            torch.testing.assert_close(x0_graph, want_x0, atol=1e-5, rtol=0)
        # the two schema-2 coefficients add the model output and the frame's previous x0
        extended = coeffs.clone()
        extended[6], extended[7] = 0.25, -0.5
        z_multi, _ = denoise(z, lr, guidance, torch.tensor([1.0]), torch.tensor([float(t)]), extended, noise, history, unet_stats, own)
        torch.testing.assert_close(z_multi, z_prev + 0.25 * output - 0.5 * history, atol=2e-6, rtol=0)


def test_blend_graph_serves_latents_and_pixels(sessions):
    """One blend graph: 4-channel latent tiles and 3-channel 4x pixel tiles, out = acc + tile * weight."""
    rng = np.random.default_rng(4)
    for channels, height, width in ((4, 36, 44), (3, 144, 176)):
        acc, tile = (rng.standard_normal((1, channels, height, width)).astype(np.float32) for _ in range(2))
        weight = rng.uniform(0, 1, (1, 1, height, width)).astype(np.float32)
        (out,) = sessions["blend"].run(None, {"acc": acc, "tile": tile, "weight": weight})
        assert out.shape == (1, channels, height, width)
        np.testing.assert_allclose(out, acc + tile * weight, rtol=0, atol=1e-6)


def test_traceable_warp_equals_reference_warp():
    x = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    flow = torch.randn(2, 2, 24, 40, generator=torch.Generator().manual_seed(1)) * 4
    torch.testing.assert_close(traceable_warp(x, flow), warp(x, flow), atol=1e-5, rtol=0)


def test_graphs_pass_onnx_checker_and_trt_lint(build):
    manifest = load_manifest(build)
    for name, entry in manifest["graphs"].items():
        onnx.checker.check_model(str(build / entry["file"]), full_check=True)
        errors = [f for f in lint_model(build / entry["file"], trt_version="11") if f.severity == "error"]
        assert errors == [], name
        model = onnx.load(str(build / entry["file"]))
        assert model.opset_import[0].version >= 17
        # dynamic dims are symbolic in the file (one graph serves every resolution)
        dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert "batch" in dims and ({"height", "width"} <= set(dims) or {"height4", "width4"} <= set(dims)), name
    blend = onnx.load(str(build / manifest["graphs"]["blend"]["file"]))
    assert [d.dim_param for d in blend.graph.input[0].type.tensor_type.shape.dim] == ["batch", "channels", "height", "width"]


def test_manifest_contents(build, tiny_reference, stats):
    manifest = load_manifest(build)
    c = tiny_reference.components
    assert manifest["checkpoint"]["fingerprint"] == c.fingerprint
    assert manifest["vae_scaling_factor"] == pytest.approx(0.08333)
    assert len(manifest["scheduler"]["alphas_cumprod"]) == 1000
    assert manifest["scheduler"]["config"]["prediction_type"] == "v_prediction"
    assert manifest["sizes"] == {**manifest["sizes"], "min_side": 32, "pad_multiple": 4, "scale": 4}
    assert manifest["schema_version"] == SCHEMA_VERSION == 3
    assert list(manifest["graphs"]) == list(GRAPH_NAMES) == [
        "flow", "flow_x2", "flow_x1", "denoise", "denoise_stats", "guide_decode", "decode_stats", "warp", "decode", "blend"]  # fmt: skip
    # the statistics lengths: 2 x the groups of every GroupNorm call (tiny: TCM + UNet, VAE decoder), fixed integers
    assert manifest["norm_stats"] == {"denoise_stats": {"size": stats["denoise_stats"], "stride": 2}, "decode_stats": {"size": stats["decode_stats"], "stride": 2}}
    assert stats_sizes(manifest) == stats and stats["denoise_stats"] > stats["decode_stats"] > 0
    assert manifest["graphs"]["denoise"]["inputs"][8] == {"name": "norm_stats", "dtype": "float32", "shape": ["batch", stats["denoise_stats"]]}
    assert manifest["graphs"]["denoise_stats"]["outputs"][0]["shape"] == ["batch", stats["denoise_stats"]]
    for name in ("guide_decode", "decode", "decode_stats"):
        tensors = manifest["graphs"][name]["inputs"] + manifest["graphs"][name]["outputs"]
        assert [t["shape"] for t in tensors if t["name"] == "norm_stats"] == [["batch", stats["decode_stats"]]]
    # RAFT at x2 / x1 traces (and counts) at sizes it accepts; it costs less at the same LR size
    assert [manifest["graphs"][g]["flops"]["lr_height"] for g in ("flow", "flow_x2", "flow_x1")] == [36, 68, 132]
    for name in GRAPH_NAMES:
        entry = manifest["graphs"][name]
        # FlopCounterMode counts convolutions and matmuls: the warp (a gather) and the blend (a multiply-add) have none
        assert entry["flops"]["per_call"] > 0 if name not in ("warp", "blend") else entry["flops"]["per_call"] >= 0
        assert [t["name"] for t in entry["inputs"]] == [t.name for t in GRAPHS[name].inputs]
    assert [t["name"] for t in manifest["graphs"]["denoise"]["inputs"]][-3:] == ["x0_history", "norm_stats", "shared_norm"]
    assert manifest["graphs"]["denoise"]["inputs"][5]["shape"] == [8]  # step_coeffs
    # guide_decode is the VAE decoder without the clamp: the same cost as the final decode
    assert manifest["graphs"]["guide_decode"]["flops"]["per_call"] >= manifest["graphs"]["decode"]["flops"]["per_call"]
    # the stats graphs see every 2nd row and column of the frame: a fraction of their network's cost
    graphs = manifest["graphs"]
    assert graphs["denoise_stats"]["flops"]["per_call"] < graphs["denoise"]["flops"]["per_call"] / 2
    assert graphs["decode_stats"]["flops"]["per_call"] < graphs["decode"]["flops"]["per_call"] / 2


def test_rerun_reuses_and_force_rebuilds(build, tiny_reference):
    lines: list[str] = []
    before = (build / "denoise.onnx").stat().st_mtime_ns
    export_all(tiny_reference.components, build, report=lines.append)
    assert all("reused" in line for line in lines) and len(lines) == len(GRAPH_NAMES)
    assert (build / "denoise.onnx").stat().st_mtime_ns == before
    lines.clear()
    export_all(tiny_reference.components, build, force=True, report=lines.append)
    assert all("exported" in line for line in lines)


def test_export_over_a_schema_1_folder_replaces_its_graphs(build, tiny_reference, tmp_path):
    """A build folder of manifest schema 1: its guide graph files go, a graph whose export key lacks the schema is traced again."""
    old = tmp_path / "old"
    shutil.copytree(build, old)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["schema_version"] = 1
    manifest["graphs"]["guide"] = {**manifest["graphs"]["decode"], "file": "guide.onnx", "typed": {"fp16": {"file": "guide.fp16.onnx"}}}
    del manifest["graphs"]["denoise"]["export_key"]["schema_version"]  # what a schema-1 svsr wrote
    (old / "manifest.json").write_text(json.dumps(manifest))
    for name in ("guide.onnx", "guide.fp16.onnx"):
        (old / name).write_bytes(b"a schema 1 graph")
    lines: list[str] = []
    written = export_all(tiny_reference.components, old, report=lines.append)
    assert written["schema_version"] == 3 and "guide" not in written["graphs"]
    assert not (old / "guide.onnx").exists() and not (old / "guide.fp16.onnx").exists()
    assert any(line.split()[:2] == ["guide", "removed"] for line in lines)
    assert [line.split()[1] for line in lines if line.split()[0] == "denoise"] == ["exported"]
    assert [line.split()[1] for line in lines if line.split()[0] == "decode"] == ["reused"]
    load_manifest(old)  # valid schema 3


def test_manifest_validation_errors(build, tmp_path):
    good = json.loads((build / "manifest.json").read_text())
    broken = json.loads(json.dumps(good))
    del broken["scheduler"]["alphas_cumprod"]
    with pytest.raises(ManifestError, match="alphas_cumprod"):
        validate_manifest(broken)
    broken = json.loads(json.dumps(good))
    broken["graphs"]["denoise"]["sha256"] = "nothex"
    with pytest.raises(ManifestError, match="graphs/denoise/sha256"):
        validate_manifest(broken)
    copy = tmp_path / "copy"
    shutil.copytree(build, copy)
    with open(copy / "decode.onnx", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ManifestError, match="decode.*sha256.*svsr-export --force"):
        load_manifest(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(copy)
    with pytest.raises(ManifestError, match="no manifest.json"):
        load_manifest(tmp_path)


def test_graphs_chained_by_hand_match_the_reference(build, sessions, tiny_reference):
    """2 frames x 2 steps through ONNX Runtime, composed by hand from the spec, with the reference's noise."""
    frames = random_frames(2, 36, 44, seed=8)
    recorder = RecordingNoise(TorchNoise(5))
    expected = tiny_reference.upscale(frames, num_inference_steps=2, noise=recorder, progress=False)
    manifest = load_manifest(build)
    steps = step_coefficients(manifest["scheduler"]["config"], np.array(manifest["scheduler"]["alphas_cumprod"], np.float32), 2)

    def run(name, **feeds):
        return sessions[name].run(None, {k: np.asarray(v, np.float32) for k, v in feeds.items()})

    sizes = stats_sizes(manifest)
    # untiled: the networks normalise with their own statistics (shared_norm 0; norm_stats any finite values)
    unet_norms = {"norm_stats": np.zeros((1, sizes["denoise_stats"])), "shared_norm": [0.0]}
    vae_norms = {"norm_stats": np.zeros((1, sizes["decode_stats"])), "shared_norm": [0.0]}
    lr = [(f.transpose(2, 0, 1)[None].astype(np.float32) / 255.0) * 2 - 1 for f in frames]
    fwd = run("flow", frame=lr[1], previous=lr[0])[0]
    bwd = run("flow", frame=lr[0], previous=lr[1])[0]  # bwd_pair[0], reversed list of one
    z = [recorder.initial[k] for k in range(2)]
    x0 = None
    zeros_guidance = np.zeros((1, 3, 144, 176), np.float32)
    for step in steps:
        order, flow = ([0, 1], fwd) if step.index == 0 else ([1, 0], bwd)
        for j, k in enumerate(order):
            guidance = zeros_guidance if j == 0 else run("warp", image=run("guide_decode", x0=x0, **vae_norms)[0], flow=flow)[0]
            z[k], x0 = run(
                "denoise",
                z=z[k],
                lr=lr[k],
                guidance=guidance,
                tcm_scale=[0.0 if j == 0 else 1.0],
                timestep=[step.timestep],
                step_coeffs=step.coeffs,
                noise=recorder.steps[step.index, k],
                x0_history=np.zeros_like(z[k]),  # DDPM reads no history
                **unet_norms,
            )
    for k in range(2):
        rgb = run("decode", z=z[k], **vae_norms)[0][0].transpose(1, 2, 0)
        assert np.abs(rgb - expected[k]).max() < 1e-4


# -- flow at x2 / x1 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, scale", [("flow_x2", 2), ("flow_x1", 1)])
def test_smaller_scale_flow_graphs_equal_the_reference_flow(tiny_reference, sessions, name, scale):
    """ORT flow_x2 / flow_x1 equal svsr.reference.flow at sizes whose x1 padding differs (h % 8 == 4 and == 0)."""
    c = tiny_reference.components
    for height, width in FLOW_RESOLUTIONS[name][:2]:
        frame, previous = sample_inputs(name, height, width, seed=5)
        with torch.no_grad():
            want = scaled_flow(c.flow_model, frame, previous, c.num_flow_updates, scale)
        (got,) = sessions[name].run(None, {"frame": frame.numpy(), "previous": previous.numpy()})
        assert got.shape == (1, 2, 4 * height, 4 * width) and np.isfinite(got).all()
        assert np.abs(got - want.numpy()).max() <= TOLERANCE[name]


def test_pad_to_multiple_is_edge_padding_that_follows_the_traced_size(tmp_path):
    """flow_x1's padding to 8 is computed from the input's shape inside the graph, not frozen at the trace size."""

    class PadTo8(torch.nn.Module):
        def forward(self, x):
            return pad_to_multiple(x, 8)

    path = tmp_path / "pad.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation, as in svsr.export.exporter
        torch.onnx.export(PadTo8(), (torch.rand(1, 3, 36, 44),), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "h8", 3: "w8"}}, opset_version=17, dynamo=False)  # fmt: skip
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for height, width in ((36, 44), (40, 48), (132, 128)):
        x = np.random.default_rng(height).random((1, 3, height, width), dtype=np.float32)
        (got,) = session.run(None, {"x": x})
        want = np.pad(x, ((0, 0), (0, 0), (0, -height % 8), (0, -width % 8)), mode="edge")
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(pad_to_multiple(torch.from_numpy(x), 8).numpy(), want)


# -- GroupNorm statistics shared across tiles --------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 8, 6, 10), (2, 8, 15)])  # a resnet's (B, C, H, W), an attention block's (B, C, L)
def test_shared_group_norm_records_and_mixes_statistics(shape):
    source = torch.nn.GroupNorm(4, 8, eps=1e-5)
    torch.nn.init.normal_(source.weight)
    torch.nn.init.normal_(source.bias)
    norms = NormStats()
    shared = SharedGroupNorm(source, norms)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 3 + 1
    with torch.no_grad():
        torch.testing.assert_close(shared(x), source(x), atol=1e-5, rtol=0)
        with norms.recording() as recorded:
            own = shared(x)
        groups = x.reshape(2, 4, -1)
        want = torch.cat([groups.mean(2), groups.var(2, unbiased=False)], dim=1)
        torch.testing.assert_close(stats_vector(recorded), want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(own, source(x), atol=1e-5, rtol=0)
        given = torch.cat([torch.full((2, 4), 0.5), torch.full((2, 4), 2.0)], dim=1)
        for mix in (0.0, 0.5, 1.0):
            with norms.applying(given, torch.tensor([mix])):
                got = shared(x)
            mean = want[:, :4] + mix * (0.5 - want[:, :4])
            var = want[:, 4:] + mix * (2.0 - want[:, 4:])
            normed = ((groups - mean[..., None]) / torch.sqrt(var[..., None] + 1e-5)).reshape(shape)
            expected = normed * source.weight.reshape(1, -1, *[1] * (len(shape) - 2)) + source.bias.reshape(1, -1, *[1] * (len(shape) - 2))
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="norm_stats has 9 values"):
            with norms.applying(torch.zeros(2, 9), torch.tensor([1.0])):
                shared(x)


def _plain_groupnorm_statistics(networks, run) -> torch.Tensor:
    """The per-group mean and biased variance each plain nn.GroupNorm of ``networks`` sees while ``run()``
    runs, in call order: an account of the statistics that does not use svsr's SharedGroupNorm."""
    seen = []

    def hook(module, args):
        groups = args[0].reshape(args[0].shape[0], module.num_groups, -1)
        seen.append(torch.cat([groups.mean(2), groups.var(2, unbiased=False)], dim=1))

    handles = [m.register_forward_pre_hook(hook) for n in networks for m in n.modules() if isinstance(m, torch.nn.GroupNorm)]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(seen, dim=1)


def test_stats_graphs_give_every_groupnorms_statistics_of_the_subsampled_frame(tiny_reference, sessions, stats):
    """denoise_stats / decode_stats (ORT) = the statistics the reference's own GroupNorms see on the whole frame
    subsampled (every 2nd row and column): TCM first, then the UNet, attention blocks included, in call order."""
    ref, c = tiny_reference, tiny_reference.components
    z, lr, guidance, tcm_scale, timestep = sample_inputs("denoise_stats", 40, 52, seed=6)
    k = NORM_STATS_STRIDE["denoise_stats"]
    pooled = [x[:, :, ::k, ::k] for x in (z, lr, guidance)]
    want = _plain_groupnorm_statistics([c.controlnet, c.unet], lambda: ref.predict(*pooled[:2], timestep, pooled[2]))
    (got,) = sessions["denoise_stats"].run(None, {"z": z.numpy(), "lr": lr.numpy(), "guidance": guidance.numpy(),
                                                  "tcm_scale": tcm_scale.numpy(), "timestep": timestep.numpy()})  # fmt: skip
    assert got.shape == want.shape == (1, stats["denoise_stats"])
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-4)

    (latent,) = sample_inputs("decode_stats", 40, 52, seed=7)
    k = NORM_STATS_STRIDE["decode_stats"]
    pooled_latent = latent[:, :, ::k, ::k]
    want = _plain_groupnorm_statistics([c.vae], lambda: ref.decode_latent(pooled_latent))
    (got,) = sessions["decode_stats"].run(None, {"latent": latent.numpy()})
    assert got.shape == want.shape == (1, stats["decode_stats"])
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-4)


def test_shared_norm_one_with_a_frames_own_statistics_is_the_untiled_graph(tiny_reference, sessions, stats):
    """ORT denoise / guide_decode / decode: shared_norm 1 fed the statistics the graph would compute itself
    gives its shared_norm-0 output (1e-5); other statistics change it, so the input is really read."""
    c = tiny_reference.components
    z, lr, guidance, tcm_scale, timestep, coeffs, noise, history, other, _ = sample_inputs("denoise", 40, 52, seed=8, stats=stats)
    denoise = build_wrapper("denoise", c)
    with torch.no_grad(), denoise.norms.recording() as recorded:
        denoise.predict(z, lr, guidance, tcm_scale, timestep)
    feeds = {"z": z, "lr": lr, "guidance": guidance, "tcm_scale": tcm_scale, "timestep": timestep, "step_coeffs": coeffs,
             "noise": noise, "x0_history": history}  # fmt: skip
    feeds = {name: x.numpy() for name, x in feeds.items()}

    def run(name, feeds, norm_stats, shared):
        return sessions[name].run(None, {**feeds, "norm_stats": norm_stats.numpy(), "shared_norm": np.array([shared], np.float32)})

    own = run("denoise", feeds, other, 0.0)
    given = run("denoise", feeds, stats_vector(recorded), 1.0)
    mixed = run("denoise", feeds, other, 1.0)
    for a, b, c_ in zip(own, given, mixed):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)
        assert np.abs(c_ - a).max() > 1e-2

    x0, other, _ = sample_inputs("guide_decode", 40, 52, seed=9, stats=stats)
    vae = build_wrapper("guide_decode", c)
    with torch.no_grad(), vae.norms.recording() as recorded:
        vae.decode(x0)
    for name, latent in (("guide_decode", "x0"), ("decode", "z")):
        own = run(name, {latent: x0.numpy()}, other, 0.0)[0]
        np.testing.assert_allclose(run(name, {latent: x0.numpy()}, stats_vector(recorded), 1.0)[0], own, atol=1e-5, rtol=0)
        assert np.abs(run(name, {latent: x0.numpy()}, other, 1.0)[0] - own).max() > 1e-2


def test_shared_norm_copies_leave_the_reference_modules_plain(tiny_reference):
    """The wrappers replace GroupNorms in copies that share the weights; the reference keeps torch's GroupNorm."""
    c = tiny_reference.components
    denoise = build_wrapper("denoise", c)
    for network in (c.unet, c.controlnet, c.vae):
        assert not any(isinstance(m, SharedGroupNorm) for m in network.modules())
    copies = [m for m in denoise.unet.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert copies and all(isinstance(m, SharedGroupNorm) for m in copies)
    assert denoise.unet.conv_in.weight is c.unet.conv_in.weight
