"""The exact PyTorch StableVSR pipeline, checkpoint loading and random-weight presets."""

from svsr.reference.checkpoint import Components, load_components
from svsr.reference.pipeline import StableVSRReference
from svsr.reference.presets import PRESETS, write_preset

__all__ = ["Components", "PRESETS", "StableVSRReference", "load_components", "write_preset"]
