"""Presets: complete StableVSR checkpoint folders, random weights made from a seed, or trained ones.

``tiny`` is for tests (seconds on a CPU, random weights); ``demo`` is a small model of the real
architecture with trained weights shipped in the package (svsr/reference/demo/, written by
tools/train_demo.py; its MODEL_CARD.md says on what and how), so a demo shows a picture and quality
options can be measured; ``full`` has the real StableVSR
architecture (x4-upscaler UNet without class embedding, TCM made with
``ControlNetModel.from_unet(.., conditioning_embedding_out_channels=(64, 128, 256))``, the x4 VAE,
the DDPM v-prediction scheduler, ``raft_large``) for benchmarks and export tests at real size.
These are the only place where numbers of the real model are written down; everything else reads
the checkpoint's config files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
from safetensors.torch import save_file

from svsr.contract.errors import InputError


@dataclass(frozen=True)
class Preset:
    """Everything needed to build one random-weight checkpoint."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    scheduler: dict[str, Any]
    tcm_embedding_channels: tuple[int, ...]
    flow_arch: str
    num_flow_updates: int
    prompt_tokens: int = 77
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # a packaged folder of trained weights (copied as it is, the seed is not used); None: random weights
    weights: Path | None = None


# The demo preset's trained checkpoint, shipped as package data (tools/train_demo.py writes it).
DEMO_WEIGHTS = Path(__file__).resolve().parent / "demo"


# StableVSR's scheduler: DDPM, v-prediction, scaled_linear 1e-4..0.02, 1000 steps (the x4
# upscaler's scheduler config).
_SCHEDULER = {
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "clip_sample": False,
    "steps_offset": 1,
    "variance_type": "fixed_small",
}

def _small_unet(channels: tuple[int, int, int]) -> dict[str, Any]:
    """The x4 upscaler UNet's layout at a small width (tiny and demo differ only in their channels)."""
    return dict(
        in_channels=7,
        out_channels=4,
        block_out_channels=channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        only_cross_attention=(True, True, False),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=32,
        attention_head_dim=8,
        use_linear_projection=True,
        sample_size=32,
    )


def _small_vae(channels: tuple[int, int, int]) -> dict[str, Any]:
    """The x4 VAE's layout (three levels, latent at LR resolution) at a small width."""
    return dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=128,
        scaling_factor=0.08333,  # the demo's training replaces it with 1 / std of its latents
    )


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        unet=_small_unet((16, 32, 32)),
        vae=_small_vae((16, 32, 32)),
        scheduler=_SCHEDULER,
        tcm_embedding_channels=(8, 16, 32),
        flow_arch="raft_small",
        num_flow_updates=2,
        notes="tiny random-weight StableVSR for tests and the demo",
    ),
    "demo": Preset(
        unet=_small_unet((32, 64, 64)),
        vae=_small_vae((32, 64, 64)),
        scheduler=_SCHEDULER,
        tcm_embedding_channels=(16, 32, 64),
        flow_arch="raft_small",
        num_flow_updates=6,
        notes="small StableVSR trained on packaged photos (svsr/reference/demo/MODEL_CARD.md)",
        weights=DEMO_WEIGHTS,
    ),
    "full": Preset(
        unet=dict(
            in_channels=7,
            out_channels=4,
            block_out_channels=(256, 512, 512, 1024),
            down_block_types=(
                "DownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
            ),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            only_cross_attention=(True, True, True, False),
            layers_per_block=2,
            norm_num_groups=32,
            cross_attention_dim=1024,
            attention_head_dim=8,
            use_linear_projection=True,
            sample_size=128,
        ),
        vae=dict(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(128, 256, 512),
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            layers_per_block=2,
            norm_num_groups=32,
            sample_size=256,
            scaling_factor=0.08333,
        ),
        scheduler=_SCHEDULER,
        tcm_embedding_channels=(64, 128, 256),
        flow_arch="raft_large",
        num_flow_updates=12,
        notes="the real StableVSR architecture with random weights (for benchmarks and export tests)",
    ),
}


def _build_flow_model(arch: str) -> torch.nn.Module:
    from torchvision.models.optical_flow import raft_large, raft_small

    return {"raft_large": raft_large, "raft_small": raft_small}[arch](weights=None)


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for raw bytes (GPT-2's table)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_tiny_text_encoder(folder: Path, hidden_size: int, tokens: int = 77) -> None:
    """A random CLIP text encoder and a byte-level tokenizer without merges (tests the text path)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        tokenizer = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), model_max_length=tokens)
        tokenizer.save_pretrained(folder / "tokenizer")
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=tokens,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    CLIPTextModel(config).save_pretrained(folder / "text_encoder")


def _copy_trained(preset_name: str, weights: Path, folder: Path) -> None:
    """The packaged trained checkpoint into ``folder`` (the weights part only; the model card goes too)."""
    if not (weights / "unet").is_dir():
        raise InputError(
            f"the {preset_name!r} preset's trained weights are missing from {weights}; reinstall svsr, "
            "or write them with python tools/train_demo.py."
        )
    shutil.copytree(weights, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.py"))


def write_preset(name: str, out_dir: str | Path, seed: int = 0, text_encoder: bool = False) -> Path:
    """Write a complete checkpoint folder for preset ``name`` and return its path.

    A preset with trained ``weights`` (``demo``) is copied from the package (``seed`` and
    ``text_encoder`` do not apply); the others get random weights from ``seed``.

    The prompt is stored as ``prompt_embeds.safetensors``, or with ``text_encoder=True`` (tiny
    preset) as a small random CLIP ``text_encoder/`` + ``tokenizer/``. The folder is written under
    a temporary name and renamed at the end, so an interrupted run never leaves a half-written
    checkpoint behind.
    """
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}.")
    preset = PRESETS[name]
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        if preset.weights is not None:
            _copy_trained(name, preset.weights, tmp)
        else:
            _write_random(preset, tmp, seed, text_encoder)
        (tmp / "svsr_preset.json").write_text(json.dumps({"preset": name, "seed": seed, "notes": preset.notes}))
        tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint folder is an ordinary folder
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_random(preset: Preset, tmp: Path, seed: int, text_encoder: bool) -> None:
    """Random weights from ``seed`` for every part of ``preset``, written into ``tmp``."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**preset.unet)
    # from_unet copies the UNet's encoder weights; StableVSR's trained TCM differs, so
    # perturb it to keep the TCM's contribution visible in parity tests.
    tcm = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=preset.tcm_embedding_channels)
    with torch.no_grad():
        for p in tcm.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    vae = AutoencoderKL(**preset.vae)
    unet.save_pretrained(tmp / "unet")
    tcm.save_pretrained(tmp / "controlnet")
    vae.save_pretrained(tmp / "vae")
    DDPMScheduler(**preset.scheduler).save_pretrained(tmp / "scheduler")
    if text_encoder:
        write_tiny_text_encoder(tmp, preset.unet["cross_attention_dim"], preset.prompt_tokens)
    else:
        embeds = torch.randn(1, preset.prompt_tokens, preset.unet["cross_attention_dim"]) * 0.5
        save_file({"prompt_embeds": embeds.contiguous()}, str(tmp / "prompt_embeds.safetensors"))
    flow_dir = tmp / "flow"
    flow_dir.mkdir()
    flow_model = _build_flow_model(preset.flow_arch)
    save_file(
        {k: v.contiguous() for k, v in flow_model.state_dict().items()}, str(flow_dir / "model.safetensors")
    )
    (flow_dir / "config.json").write_text(
        json.dumps({"arch": preset.flow_arch, "num_flow_updates": preset.num_flow_updates}, indent=2)
    )
