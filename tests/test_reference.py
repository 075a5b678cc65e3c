"""The PyTorch reference follows docs/stablevsr-algorithm.md."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from svsr.contract.errors import InputError
from svsr.device.noise import TorchNoise
from tests.support.noise import RecordingNoise
from svsr.reference import pipeline as pipeline_module
from svsr.reference.warp import warp
from svsr.contract.sweeps import frame_calls
from tests.conftest import random_frames


def _lr_tensor(frames):
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0


# -- one timestep equals a hand-composed call of the diffusers modules ---------------------------
def test_one_step_without_tcm_matches_diffusers_modules(tiny_reference):
    """1 frame, 1 step: UNet alone, then DDPMScheduler.step with the official generator."""
    c = tiny_reference.components
    frames = random_frames(1, 36, 44, seed=1)
    got = tiny_reference.upscale(frames, num_inference_steps=1, seed=7, progress=False)[0]

    generator = torch.Generator("cpu").manual_seed(7)
    c.scheduler.set_timesteps(1)
    t = c.scheduler.timesteps[0]
    lr = _lr_tensor(frames)
    with torch.no_grad():
        z = torch.randn((1, 4, 36, 44), generator=generator) * c.scheduler.init_noise_sigma
        eps = c.unet(torch.cat([z, lr], 1), t, encoder_hidden_states=c.prompt_embeds).sample
        z = c.scheduler.step(eps, t, z, generator=generator).prev_sample
        image = (c.vae.decode(z / c.vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    expected = image[0].permute(1, 2, 0).numpy()
    assert got.shape == (144, 176, 3)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_one_step_with_tcm_matches_diffusers_modules(tiny_reference):
    """2 frames, 1 step: frame 1 gets the TCM with frame 0's x0 decoded and warped by RAFT(up1, up0)."""
    c = tiny_reference.components
    frames = random_frames(2, 36, 44, seed=2)
    got = tiny_reference.upscale(frames, num_inference_steps=1, seed=3, progress=False)

    generator = torch.Generator("cpu").manual_seed(3)
    c.scheduler.set_timesteps(1)
    t = c.scheduler.timesteps[0]
    lr = _lr_tensor(frames)
    sf = c.vae.config.scaling_factor
    with torch.no_grad():
        up = F.interpolate(lr, scale_factor=4, mode="bicubic")
        flow_1_to_0 = c.flow_model(up[1:2], up[0:1], num_flow_updates=c.num_flow_updates)[-1]
        z = [torch.randn((1, 4, 36, 44), generator=generator) for _ in range(2)]
        eps0 = c.unet(torch.cat([z[0], lr[0:1]], 1), t, encoder_hidden_states=c.prompt_embeds).sample
        out0 = c.scheduler.step(eps0, t, z[0], generator=generator)
        guidance = warp(c.vae.decode(out0.pred_original_sample / sf).sample, flow_1_to_0)
        x_in = torch.cat([z[1], lr[1:2]], 1)
        down, mid = c.controlnet(
            x_in, t, encoder_hidden_states=c.prompt_embeds, controlnet_cond=guidance, conditioning_scale=1.0, return_dict=False
        )
        eps1 = c.unet(
            x_in, t, encoder_hidden_states=c.prompt_embeds, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample
        z1 = c.scheduler.step(eps1, t, z[1], generator=generator).prev_sample
        image1 = (c.vae.decode(z1 / sf).sample / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        eps1_without_tcm = c.unet(x_in, t, encoder_hidden_states=c.prompt_embeds).sample
    # the TCM must change the prediction, or this test could not tell the two paths apart
    assert (eps1 - eps1_without_tcm).abs().max() > 1e-4
    np.testing.assert_allclose(got[1], image1, atol=1e-6, rtol=0)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_ddpm_step_equals_diffusers_step(tiny_reference, prediction_type):
    c = tiny_reference.components
    original = c.scheduler.config.prediction_type
    c.scheduler.register_to_config(prediction_type=prediction_type)
    try:
        c.scheduler.set_timesteps(10)
        torch.manual_seed(0)
        sample, model_output = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
        for t in c.scheduler.timesteps[[0, 5, 9]]:
            expected = c.scheduler.step(model_output, t, sample, generator=torch.Generator().manual_seed(5))
            noise = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(5))
            prev, x0 = tiny_reference.ddpm_step(model_output, t, sample, noise)
            assert torch.equal(prev, expected.prev_sample)
            assert torch.equal(x0, expected.pred_original_sample)
    finally:
        c.scheduler.register_to_config(prediction_type=original)


# -- whole runs equal the original loop with another diffusers scheduler swapped in ------------------
def _original_loop(c, frames, num_steps, schedulers, seed, **step_kwargs):
    """The official loop (docs/stablevsr-algorithm.md) written out with diffusers' modules.

    ``schedulers(k)`` is the scheduler object stepping frame k: the official code's one shared object,
    or one per frame for a multistep solver. x0 is ``pred_original_sample`` where the step returns it,
    else the solver's newest converted model output.
    """
    generator = torch.Generator("cpu").manual_seed(seed)
    n = len(frames)
    for k in range(n):
        schedulers(k).set_timesteps(num_steps)
    timesteps = schedulers(0).timesteps
    lr, sf = _lr_tensor(frames), c.vae.config.scaling_factor
    with torch.no_grad():
        up = F.interpolate(lr, scale_factor=4, mode="bicubic")

        def raft(a, b):
            return c.flow_model(up[a : a + 1], up[b : b + 1], num_flow_updates=c.num_flow_updates)[-1]

        fwd = [raft(i, i - 1) for i in range(1, n)]
        bwd = [raft(i - 1, i) for i in range(1, n)][::-1]
        shape = (1, 4, lr.shape[2], lr.shape[3])
        z = [torch.randn(shape, generator=generator) * schedulers(k).init_noise_sigma for k in range(n)]
        order, flows, x0_prev = list(range(n)), fwd, None
        for t in timesteps:
            for j, k in enumerate(order):
                x_in = torch.cat([z[k], lr[k : k + 1]], 1)
                if j == 0:
                    eps = c.unet(x_in, t, encoder_hidden_states=c.prompt_embeds).sample
                else:
                    g = warp(c.vae.decode(x0_prev / sf).sample, flows[j - 1])
                    down, mid = c.controlnet(
                        x_in, t, encoder_hidden_states=c.prompt_embeds, controlnet_cond=g, conditioning_scale=1.0, return_dict=False
                    )
                    eps = c.unet(
                        x_in, t, encoder_hidden_states=c.prompt_embeds, down_block_additional_residuals=down,
                        mid_block_additional_residual=mid,
                    ).sample
                out = schedulers(k).step(eps, t, z[k], generator=generator, **step_kwargs)
                z[k] = out.prev_sample
                x0_prev = getattr(out, "pred_original_sample", None)
                x0_prev = x0_prev if x0_prev is not None else schedulers(k).model_outputs[-1]
            order, flows = order[::-1], (bwd if flows is fwd else fwd)
        return [(c.vae.decode(zk / sf).sample / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).numpy() for zk in z]


@pytest.mark.parametrize("eta", [0.0, 0.6])
def test_ddim_run_equals_the_original_loop_with_ddim_swapped_in(tiny_reference, eta):
    from diffusers import DDIMScheduler

    c = tiny_reference.components
    frames = random_frames(3, 32, 36, seed=8)
    ddim = DDIMScheduler.from_config(c.scheduler.config)
    want = _original_loop(c, frames, 3, lambda k: ddim, seed=5, eta=eta)
    got = tiny_reference.upscale(frames, num_inference_steps=3, seed=5, progress=False, scheduler="ddim", eta=eta)
    ddpm = tiny_reference.upscale(frames, num_inference_steps=3, seed=5, progress=False)
    for x, y, other in zip(got, want, ddpm):
        np.testing.assert_allclose(x, y, atol=1e-6, rtol=0)
        assert np.abs(x - other).max() > 1e-3  # the scheduler really changed the run


def test_dpm_solver_run_keeps_one_history_per_frame(tiny_reference):
    from diffusers import DPMSolverMultistepScheduler

    c = tiny_reference.components
    frames = random_frames(2, 32, 36, seed=9)
    solvers = [DPMSolverMultistepScheduler.from_config(c.scheduler.config) for _ in frames]
    want = _original_loop(c, frames, 3, lambda k: solvers[k], seed=2)
    got = tiny_reference.upscale(frames, num_inference_steps=3, seed=2, progress=False, scheduler="dpmpp-2m")
    for x, y in zip(got, want):
        np.testing.assert_allclose(x, y, atol=1e-6, rtol=0)


def test_observer_sees_the_graphs_inputs(tiny_reference):
    """guide_decode gets x0, warp its decoded image; denoise's x0_history is the frame's previous x0; the stats
    graphs get the whole frame's inputs of the call they precede; the untiled networks shared_norm 0."""
    from svsr.contract.graphs import GRAPHS
    from svsr.contract.scheduler import step_coefficients

    c = tiny_reference.components
    frames = random_frames(2, 32, 32, seed=10)
    seen = []
    tiny_reference.upscale(frames, num_inference_steps=3, seed=1, progress=False, scheduler="dpmpp-2m",
                           observer=lambda graph, inputs, call: seen.append((graph, dict(inputs), call)))
    graphs = [graph for graph, _, _ in seen]
    assert graphs.count("flow") == 2 and graphs.count("decode") == 2 and "guide" not in graphs and "flow_x2" not in graphs
    assert graphs.count("guide_decode") == graphs.count("warp") == 3 and graphs.count("denoise") == graphs.count("denoise_stats") == 6
    assert graphs.count("decode_stats") == 3 + 2  # before every guide_decode and every final decode
    sizes = tiny_reference.norm_stats_sizes()
    for (graph, inputs, call), (after, after_inputs, after_call) in zip(seen, seen[1:]):
        assert list(inputs) == [spec.name for spec in GRAPHS[graph].inputs]
        if graph == "denoise_stats":  # the same network inputs as the denoise call it precedes
            assert after == "denoise" and after_call == call
            for name in inputs:
                np.testing.assert_array_equal(inputs[name], after_inputs[name])
        if graph == "decode_stats":
            assert after in ("guide_decode", "decode") and after_call == call
            np.testing.assert_array_equal(inputs["latent"], after_inputs["x0" if after == "guide_decode" else "z"])
        if "shared_norm" in inputs:
            stats = "denoise_stats" if graph == "denoise" else "decode_stats"
            assert inputs["shared_norm"].tolist() == [0.0] and inputs["norm_stats"].shape == (1, sizes[stats])
            assert not inputs["norm_stats"].any()
    steps = step_coefficients(dict(c.scheduler.config), c.scheduler.alphas_cumprod.numpy(), 3, "dpmpp-2m")
    denoise = [(inputs, call) for graph, inputs, call in seen if graph == "denoise"]
    guide_x0 = {call: inputs["x0"] for graph, inputs, call in seen if graph == "guide_decode"}
    for (inputs, call) in denoise:
        np.testing.assert_array_equal(inputs["step_coeffs"], steps[call.step].coeffs)
        assert inputs["x0_history"].shape == inputs["z"].shape
        assert (np.abs(inputs["x0_history"]).max() == 0) == (call.step == 0)
    # the x0 a frame hands the next call's guidance (same step) is that frame's history at its next step
    calls = [call for _, call in denoise]
    x0_of = {(call.step, call.frame): guide_x0[after] for call, after in zip(calls, calls[1:]) if after.step == call.step}
    checked = 0
    for inputs, call in denoise:
        if (call.step - 1, call.frame) in x0_of:
            np.testing.assert_array_equal(inputs["x0_history"], x0_of[(call.step - 1, call.frame)])
            checked += 1
    assert checked == 2
    for graph, inputs, call in seen:
        if graph == "warp":
            x0 = guide_x0[call]
            with torch.no_grad():
                decoded = c.vae.decode(torch.from_numpy(x0) / c.vae.config.scaling_factor).sample.numpy()
            np.testing.assert_array_equal(inputs["image"], decoded)
            assert inputs["flow"].shape == (1, 2, 128, 128)


# -- the warp ---------------------------------------------------------------------------------------
def _ramp(height, width):
    return torch.arange(width, dtype=torch.float32).expand(1, 1, height, width).clone()


def test_warp_translation_moves_a_ramp_by_the_flow_with_the_quirk():
    """On a horizontal ramp I(x) = x, bilinear sampling is exact: the output is the sampled position.

    With the original's normalisation (align_corners=True) and sampling (False), pixel x with flow dx
    samples position (x + dx) * W / (W - 1) - 0.5.
    """
    height, width, dx = 16, 40, 5.0
    flow = torch.zeros(1, 2, height, width)
    flow[:, 0] = dx
    # rows 0 and H-1 sample half outside the image (the same quirk applies vertically): skip them
    out = warp(_ramp(height, width), flow)[0, 0, 1:-1]
    cols = torch.arange(width, dtype=torch.float32)
    expected = (cols + dx) * width / (width - 1) - 0.5
    inside = (expected >= 0) & (expected <= width - 1)
    assert inside.sum() > 20
    torch.testing.assert_close(out[:, inside], expected[inside].expand(height - 2, -1), atol=1e-4, rtol=0)
    # pixels that sample beyond the right edge are zero-padded (partially or fully)
    assert out[:, -1].abs().max() < expected[-1]


def test_warp_vertical_translation_moves_a_pattern_down():
    pattern = torch.zeros(1, 3, 32, 32)
    pattern[:, :, 10, 8:24] = 1.0  # a horizontal line at row 10
    flow = torch.zeros(1, 2, 32, 32)
    flow[:, 1] = -6.0  # every pixel looks 6 rows up: the line moves down to ~row 16
    out = warp(pattern, flow)
    row_profile = out[0, 0, :, 16]
    assert int(row_profile.argmax()) in (15, 16)
    assert row_profile[:12].max() < 1e-6


def test_zero_flow_is_not_the_identity():
    image = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    out = warp(image, torch.zeros(1, 2, 20, 24))
    assert (out - image).abs().max() > 0.05
    # it is a slight zoom (x W/(W-1)) and a half-pixel shift; border rows/columns go half-dark
    ramp_out = warp(_ramp(20, 24), torch.zeros(1, 2, 20, 24))[0, 0, 10]
    expected = torch.arange(24.0) * 24 / 23 - 0.5
    torch.testing.assert_close(ramp_out[1:-1], expected[1:-1], atol=1e-4, rtol=0)


# -- sweep order and flow selection ---------------------------------------------------------------
def _spec_order(num_frames, num_steps):
    """Written straight from the spec's pseudo-code, independently of svsr.contract.sweeps."""
    calls = []
    order, flows = list(range(num_frames)), "fwd"
    for step in range(num_steps):
        for j, k in enumerate(order):
            calls.append((step, k, None if j == 0 else (flows, j - 1)))
        order = order[::-1]
        flows = "bwd" if flows == "fwd" else "fwd"
    return calls


def test_sweep_order_and_flow_selection_n4_s3(tiny_reference, monkeypatch):
    frames = random_frames(4, 32, 36, seed=4)
    used_flows = []
    real_warp = pipeline_module.warp

    def recording_warp(x, flow):
        used_flows.append(flow)
        return real_warp(x, flow)

    monkeypatch.setattr(pipeline_module, "warp", recording_warp)
    trace = []
    tiny_reference.upscale(frames, num_inference_steps=3, seed=0, progress=False, trace=trace)
    recorded = [(c.step, c.frame, None if c.flow_index is None else (c.direction, c.flow_index)) for c in trace]
    assert recorded == _spec_order(4, 3)
    assert [c.step for c in trace] == sorted(c.step for c in trace)

    # the flow tensors actually handed to the warp are the spec's: fwd[j-1] = RAFT(up[k], up[k-1]),
    # bwd = reversed([RAFT(up[i-1], up[i])])
    c = tiny_reference.components
    with torch.no_grad():
        up = F.interpolate(_lr_tensor(frames), scale_factor=4, mode="bicubic")

        def raft(a, b):
            return c.flow_model(up[a : a + 1], up[b : b + 1], num_flow_updates=c.num_flow_updates)[-1]

        expected = []
        for step, k, flow in _spec_order(4, 3):
            if flow is not None:
                previous = k - 1 if flow[0] == "fwd" else k + 1
                expected.append(raft(k, previous))
    assert len(used_flows) == len(expected) == 3 * 3
    for got, want in zip(used_flows, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_schedule_flow_pairs_point_to_the_previous_frame():
    calls = list(frame_calls(5, 2))
    for call in calls:
        if call.uses_tcm:
            frame, previous = call.flow_pair
            assert abs(frame - previous) == 1
            assert previous == (calls[calls.index(call) - 1].frame)


# -- determinism, sizes, clip lengths -------------------------------------------------------------
def test_seeded_runs_are_deterministic_and_seeds_differ(tiny_reference):
    frames = random_frames(2, 36, 44, seed=5)
    a = tiny_reference.upscale(frames, num_inference_steps=2, seed=11, progress=False)
    b = tiny_reference.upscale(frames, num_inference_steps=2, seed=11, progress=False)
    c = tiny_reference.upscale(frames, num_inference_steps=2, seed=12, progress=False)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert max(np.abs(x - z).max() for x, z in zip(a, c)) > 1e-3


def test_explicit_noise_reproduces_the_seeded_run(tiny_reference):
    frames = random_frames(3, 36, 44, seed=6)
    recorder = RecordingNoise(TorchNoise(21))
    seeded = tiny_reference.upscale(frames, num_inference_steps=2, noise=recorder, progress=False)
    replay = tiny_reference.upscale(frames, num_inference_steps=2, noise=recorder.as_explicit(2), progress=False)
    assert len(recorder.steps) == 2 * 3
    for x, y in zip(seeded, replay):
        assert np.array_equal(x, y)


def test_36x44_clip_works(tiny_reference):
    out = tiny_reference.upscale(random_frames(3, 36, 44), num_inference_steps=2, progress=False)
    assert len(out) == 3
    assert all(o.shape == (144, 176, 3) and o.dtype == np.float32 for o in out)
    assert all(0.0 <= o.min() and o.max() <= 1.0 for o in out)


def test_sizes_not_multiple_of_4_are_padded_and_cropped(tiny_reference):
    out = tiny_reference.upscale(random_frames(2, 34, 37), num_inference_steps=1, progress=False)
    assert [o.shape for o in out] == [(136, 148, 3)] * 2


# -- flow scales -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale, size", [(2, (64, 68)), (1, (132, 128)), (1, (128, 136))])
def test_flow_at_x2_and_x1_is_raft_on_smaller_frames_brought_to_the_4x_grid(tiny_reference, scale, size):
    """x2: RAFT on bicubic x2; x1: RAFT on the frames edge-padded to a multiple of 8 (h % 8 == 4 pads, 0 does not),
    cropped; then bilinear to (4h, 4w) and x 4 / scale. Finite flows of the x4 flow's shape."""
    c = tiny_reference.components
    height, width = size
    lr = _lr_tensor(random_frames(2, height, width, seed=scale))
    with torch.no_grad():
        fwd, bwd = tiny_reference.flows(lr, flow_scale=scale)
        if scale == 2:
            seen = F.interpolate(lr, scale_factor=2, mode="bicubic")
        else:
            seen = F.pad(lr, (0, -width % 8, 0, -height % 8), mode="replicate")
        raft = c.flow_model(seen[1:2], seen[0:1], num_flow_updates=c.num_flow_updates)[-1][:, :, : height * scale, : width * scale]
        want = F.interpolate(raft, size=(4 * height, 4 * width), mode="bilinear", align_corners=False) * (4 / scale)
    assert len(fwd) == len(bwd) == 1
    for flow in fwd + bwd:
        assert flow.shape == (1, 2, 4 * height, 4 * width) and torch.isfinite(flow).all()
    torch.testing.assert_close(fwd[0], want, atol=1e-5, rtol=0)
    assert (fwd[0] - bwd[0]).abs().max() > 1e-3  # the two directions differ


def test_a_run_at_flow_scale_2_reports_flow_x2_and_warps_with_its_flow(tiny_reference):
    frames = random_frames(2, 64, 64, seed=12)
    seen = {2: [], 4: []}
    outputs = {
        scale: tiny_reference.upscale(frames, num_inference_steps=1, seed=0, progress=False, flow_scale=scale,
                                      observer=lambda graph, inputs, call, scale=scale: seen[scale].append((graph, dict(inputs))))
        for scale in (2, 4)
    }  # fmt: skip
    assert [g for g, _ in seen[2]].count("flow_x2") == 2 and "flow" not in [g for g, _ in seen[2]]
    lr = _lr_tensor(frames)
    with torch.no_grad():
        fwd, _ = tiny_reference.flows(lr, flow_scale=2)
    (warp_at_2,) = [inputs["flow"] for graph, inputs in seen[2] if graph == "warp"]
    (warp_at_4,) = [inputs["flow"] for graph, inputs in seen[4] if graph == "warp"]
    np.testing.assert_array_equal(warp_at_2, fwd[0].numpy())  # the guidance is warped by the x2 flow
    assert np.abs(warp_at_2 - warp_at_4).max() > 1e-3
    assert all(np.isfinite(o).all() for o in outputs[2]) and not np.array_equal(outputs[2][1], outputs[4][1])
    np.testing.assert_array_equal(outputs[2][0], outputs[4][0])  # the sweep's first frame has no guidance: flow-free


@pytest.mark.parametrize("scale, size, message", [
    (1, (100, 140), r"flow_scale 1 needs frames of at least 128 px per side \(RAFT sees them at x1\), but these are 140x100; use flow_scale 4\."),
    (2, (40, 60), r"flow_scale 2 needs frames of at least 64 px per side .* but these are 60x40; use flow_scale 4\."),
    (3, (64, 64), r"flow_scale 3 is not a flow scale; use 4 \(the original\), 2 or 1\."),
])  # fmt: skip
def test_frames_too_small_for_a_flow_scale_are_refused_in_one_sentence(tiny_reference, scale, size, message):
    with pytest.raises(InputError, match=message):
        tiny_reference.upscale(random_frames(2, *size), num_inference_steps=1, progress=False, flow_scale=scale)
    with pytest.raises(InputError, match=message):
        tiny_reference.flows(_lr_tensor(random_frames(2, *size)), flow_scale=scale)


def test_30x30_is_refused(tiny_reference):
    with pytest.raises(InputError, match="too small.*at least 32 px"):
        tiny_reference.upscale(random_frames(1, 30, 30), num_inference_steps=1, progress=False)


def test_one_frame_clip_never_calls_tcm_or_flow(tiny_reference, monkeypatch):
    c = tiny_reference.components
    calls = {"tcm": 0, "flow": 0}
    monkeypatch.setattr(c.controlnet, "forward", lambda *a, **k: calls.__setitem__("tcm", calls["tcm"] + 1))
    monkeypatch.setattr(c.flow_model, "forward", lambda *a, **k: calls.__setitem__("flow", calls["flow"] + 1))
    out = tiny_reference.upscale(random_frames(1, 32, 32), num_inference_steps=3, progress=False)
    assert calls == {"tcm": 0, "flow": 0}
    assert out[0].shape == (128, 128, 3)


@pytest.mark.parametrize(
    "frames, message",
    [
        ([], "no frames"),
        ([np.zeros((40, 40, 3), np.float32)], "dtype float32"),
        ([np.zeros((40, 40, 4), np.uint8)], "HxWx3"),
        ([np.zeros((40, 40), np.uint8)], "HxWx3"),
        ([np.zeros((40, 40, 3), np.uint8), np.zeros((40, 44, 3), np.uint8)], "one size"),
        (["not an array"], "not a numpy array"),
    ],
)
def test_bad_frames_are_refused_with_a_clear_message(tiny_reference, frames, message):
    with pytest.raises(InputError, match=message):
        tiny_reference.upscale(frames, num_inference_steps=1, progress=False)


def test_torch_noise_draws_in_the_official_order():
    noise = TorchNoise(9)
    generator = torch.Generator("cpu").manual_seed(9)
    first = noise.initial_latent(0, (1, 4, 8, 8))
    second = noise.step_noise(0, 0, (1, 4, 8, 8))
    assert np.array_equal(first, torch.randn((1, 4, 8, 8), generator=generator).numpy())
    assert np.array_equal(second, torch.randn((1, 4, 8, 8), generator=generator).numpy())
