"""Load a StableVSR checkpoint folder (diffusers layout) into its components.

Layout: ``unet/``, ``controlnet/`` (the TCM), ``vae/``, ``scheduler/``, and either
``text_encoder/`` + ``tokenizer/`` (the prompt is embedded once) or ``prompt_embeds.safetensors``
(tensor ``prompt_embeds``, shape (1, 77, D)). Optical flow: an optional ``flow/`` folder
(``config.json`` with ``arch`` and ``num_flow_updates``, ``model.safetensors`` with a torchvision
RAFT state dict); without it, torchvision's ``raft_large`` with its default weights from the torch
hub cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel

from svsr.contract.errors import CheckpointError

REQUIRED_PARTS = ("unet", "controlnet", "vae", "scheduler")
FLOW_ARCHS = ("raft_large", "raft_small")
DEFAULT_NUM_FLOW_UPDATES = 12
SUPPORTED_VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large")
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Components:
    """The loaded networks and settings of one StableVSR checkpoint (float32, eval mode, CPU)."""

    unet: UNet2DConditionModel
    controlnet: ControlNetModel
    vae: AutoencoderKL
    scheduler: DDPMScheduler
    prompt_embeds: torch.Tensor  # (1, tokens, D)
    flow_model: torch.nn.Module
    num_flow_updates: int
    flow_arch: str
    source: Path
    fingerprint: str

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)


def resolve_weights(weights: str | Path) -> Path:
    """Return a local checkpoint folder for a path or a Hugging Face model id.

    A model id (``owner/name``) is taken from the huggingface_hub cache, and downloaded only when
    the hub is reachable and ``HF_HUB_OFFLINE`` is not set.
    """
    path = Path(weights).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file, not a checkpoint folder; give the folder that holds unet/, vae/, ...")
    if not _HF_ID.match(str(weights)):
        raise CheckpointError(f"checkpoint folder {path} does not exist; give a StableVSR folder or a Hugging Face id.")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(weights), local_files_only=True))
    except Exception:
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
            raise CheckpointError(
                f"{weights} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                "download it once online or pass a local checkpoint folder."
            ) from None
    try:
        return Path(snapshot_download(str(weights)))
    except Exception as exc:
        raise CheckpointError(
            f"could not download {weights} from the Hugging Face hub ({type(exc).__name__}); "
            "check the id and network, or pass a local checkpoint folder."
        ) from None


def checkpoint_fingerprint(folder: Path) -> str:
    """sha256 over every file's relative path and content: changes whenever any weight or config does."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = file.relative_to(folder).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        digest.update(rel.encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def _load_prompt_embeds(folder: Path, prompt: str) -> torch.Tensor:
    embeds_file = folder / "prompt_embeds.safetensors"
    if embeds_file.exists():
        from safetensors.torch import load_file

        tensors = load_file(str(embeds_file))
        if "prompt_embeds" not in tensors or tensors["prompt_embeds"].dim() != 3:
            raise CheckpointError(
                f"{embeds_file} must hold a tensor 'prompt_embeds' of shape (1, 77, D); re-export it."
            )
        return tensors["prompt_embeds"].float()
    if (folder / "text_encoder").is_dir() and (folder / "tokenizer").is_dir():
        from transformers import CLIPTextModel, CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
        text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder").eval()
        ids = tokenizer(
            prompt,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        with torch.no_grad():
            return text_encoder(ids)[0].float()
    raise CheckpointError(
        f"{folder} has neither text_encoder/+tokenizer/ nor prompt_embeds.safetensors; add one of them."
    )


def _default_raft_large() -> torch.nn.Module:
    from torchvision.models.optical_flow import Raft_Large_Weights, raft_large

    weights = Raft_Large_Weights.DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("SVSR_OFFLINE")
    if not cached.exists() and offline:
        raise CheckpointError(
            f"RAFT weights {cached.name} are not in the torch hub cache; put the file at {cached} "
            "or add a flow/ folder (config.json + model.safetensors) to the checkpoint."
        )
    try:
        return raft_large(weights=weights, progress=False)
    except Exception:
        raise CheckpointError(
            f"could not load or download RAFT weights {cached.name}; put the file at {cached} "
            "or add a flow/ folder (config.json + model.safetensors) to the checkpoint."
        ) from None


def _load_flow_model(folder: Path) -> tuple[torch.nn.Module, int, str]:
    flow_dir = folder / "flow"
    if not flow_dir.is_dir():
        return _default_raft_large(), DEFAULT_NUM_FLOW_UPDATES, "raft_large"
    config_file, weights_file = flow_dir / "config.json", flow_dir / "model.safetensors"
    if not config_file.exists() or not weights_file.exists():
        raise CheckpointError(f"{flow_dir} needs both config.json and model.safetensors; add the missing file.")
    config = json.loads(config_file.read_text())
    arch = config.get("arch", "raft_large")
    if arch not in FLOW_ARCHS:
        raise CheckpointError(f"{config_file} names arch {arch!r}; use one of {', '.join(FLOW_ARCHS)}.")
    from safetensors.torch import load_file
    from torchvision.models.optical_flow import raft_large, raft_small

    model = {"raft_large": raft_large, "raft_small": raft_small}[arch](weights=None)
    try:
        model.load_state_dict(load_file(str(weights_file)))
    except RuntimeError:
        raise CheckpointError(f"{weights_file} does not hold a torchvision {arch} state dict; check flow/config.json.") from None
    return model, int(config.get("num_flow_updates", DEFAULT_NUM_FLOW_UPDATES)), arch


def _check_scheduler(scheduler: DDPMScheduler, folder: Path) -> None:
    config = scheduler.config
    if config.variance_type not in SUPPORTED_VARIANCE_TYPES:
        raise CheckpointError(
            f"{folder / 'scheduler'} uses variance_type {config.variance_type!r}, which svsr does not support; "
            "use fixed_small (StableVSR's)."
        )
    if config.thresholding:
        raise CheckpointError(f"{folder / 'scheduler'} enables dynamic thresholding, which svsr does not support; disable it.")


def load_components(weights: str | Path, prompt: str = "") -> Components:
    """Load every component of a StableVSR checkpoint (folder or Hugging Face id) in float32 on the CPU."""
    folder = resolve_weights(weights)
    missing = [part for part in REQUIRED_PARTS if not (folder / part).is_dir()]
    if missing:
        raise CheckpointError(f"{folder} is missing {', '.join(p + '/' for p in missing)}; give a complete StableVSR checkpoint folder.")
    try:
        unet = UNet2DConditionModel.from_pretrained(folder / "unet").eval()
        controlnet = ControlNetModel.from_pretrained(folder / "controlnet").eval()
        vae = AutoencoderKL.from_pretrained(folder / "vae").eval()
        scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"could not load {folder}: {exc}".rstrip(".") + "; check the checkpoint files.") from None
    _check_scheduler(scheduler, folder)
    prompt_embeds = _load_prompt_embeds(folder, prompt)
    flow_model, num_flow_updates, flow_arch = _load_flow_model(folder)
    for module in (unet, controlnet, vae, flow_model):
        module.float().eval().requires_grad_(False)
    return Components(
        unet=unet,
        controlnet=controlnet,
        vae=vae,
        scheduler=scheduler,
        prompt_embeds=prompt_embeds,
        flow_model=flow_model.eval(),
        num_flow_updates=num_flow_updates,
        flow_arch=flow_arch,
        source=folder,
        fingerprint=checkpoint_fingerprint(folder),
    )
