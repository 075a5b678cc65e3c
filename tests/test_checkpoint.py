"""Checkpoint folders: every supported layout loads, every broken one fails with a clear sentence."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from svsr.contract.errors import CheckpointError, InputError
from svsr.reference import StableVSRReference, load_components, write_preset
from svsr.reference.checkpoint import checkpoint_fingerprint, resolve_weights
from tests.conftest import random_frames


@pytest.fixture
def checkpoint_copy(tiny_checkpoint, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, copy)
    return copy


def test_text_encoder_and_tokenizer_embed_the_prompt_once(tmp_path):
    folder = write_preset("tiny", tmp_path / "with_te", seed=1, text_encoder=True)
    assert not (folder / "prompt_embeds.safetensors").exists()
    components = load_components(folder, prompt="")
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    ids = tokenizer("", padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = CLIPTextModel.from_pretrained(folder / "text_encoder")(ids)[0]
    assert components.prompt_embeds.shape == (1, 77, 32)
    torch.testing.assert_close(components.prompt_embeds, expected)
    other = load_components(folder, prompt="a sharp video").prompt_embeds
    assert (other - expected).abs().max() > 1e-4
    out = StableVSRReference(components).upscale(random_frames(1, 32, 32), num_inference_steps=1, progress=False)
    assert out[0].shape == (128, 128, 3)


def test_fingerprint_changes_with_any_weight(checkpoint_copy):
    before = checkpoint_fingerprint(checkpoint_copy)
    weights = next((checkpoint_copy / "vae").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert checkpoint_fingerprint(checkpoint_copy) != before


@pytest.mark.parametrize("part", ["unet", "controlnet", "vae", "scheduler"])
def test_missing_part(checkpoint_copy, part):
    shutil.rmtree(checkpoint_copy / part)
    with pytest.raises(CheckpointError, match=f"missing {part}/"):
        load_components(checkpoint_copy)


def test_missing_prompt(checkpoint_copy):
    (checkpoint_copy / "prompt_embeds.safetensors").unlink()
    with pytest.raises(CheckpointError, match="text_encoder/\\+tokenizer/ nor prompt_embeds"):
        load_components(checkpoint_copy)


def test_flow_folder_errors(checkpoint_copy):
    config = checkpoint_copy / "flow" / "config.json"
    config.write_text(json.dumps({"arch": "pwcnet"}))
    with pytest.raises(CheckpointError, match="raft_large, raft_small"):
        load_components(checkpoint_copy)
    config.write_text(json.dumps({"arch": "raft_large", "num_flow_updates": 12}))
    with pytest.raises(CheckpointError, match="state dict"):
        load_components(checkpoint_copy)
    (checkpoint_copy / "flow" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="config.json and model.safetensors"):
        load_components(checkpoint_copy)


def test_default_raft_weights_missing_offline_names_the_file(checkpoint_copy, tmp_path, monkeypatch):
    shutil.rmtree(checkpoint_copy / "flow")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(CheckpointError, match=r"raft_large_C_T_SKHT_V2-ff5fadd5\.pth.*torch_home/hub/checkpoints"):
        load_components(checkpoint_copy)


def test_hub_id_not_cached_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache"):
        resolve_weights("someone/NotAModel")
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_weights(str(tmp_path / "no_such_folder"))


def test_hub_id_from_cache(tiny_checkpoint, monkeypatch, tmp_path):
    """A cached snapshot is found without the network (the cache layout huggingface_hub reads)."""
    cache = tmp_path / "hub"
    repo = cache / "models--someone--TinyVSR"
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_checkpoint, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_weights("someone/TinyVSR") == snapshot


def test_unknown_preset(tmp_path):
    with pytest.raises(InputError, match="choose one of demo, full, tiny"):
        write_preset("huge", tmp_path / "x")
    assert not list(tmp_path.iterdir())


def test_unsupported_scheduler_is_refused(checkpoint_copy):
    config_file = checkpoint_copy / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config["variance_type"] = "learned_range"
    config_file.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="variance_type 'learned_range'"):
        load_components(checkpoint_copy)


def test_preset_is_deterministic(tmp_path):
    a = write_preset("tiny", tmp_path / "a", seed=3)
    b = write_preset("tiny", tmp_path / "b", seed=3)
    c = write_preset("tiny", tmp_path / "c", seed=4)
    fingerprint = checkpoint_fingerprint
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert np.isfinite(load_components(a).prompt_embeds.numpy()).all()
