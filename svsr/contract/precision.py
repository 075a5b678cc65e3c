"""The precision type: which precision each graph runs in (torch-free).

One small frozen value answers "which precision does graph G run in" everywhere: the exporter's
typed graphs, the engine builder, the runtime backends, rebuild commands and the manifest. In the
spirit of vs-mlrt's ``Backend.TRT(fp16=True)``::

    Precision("fp16")                      # every graph fp16
    Precision("fp16", vae="fp32")          # UNet/TCM fp16, the VAE graphs (guide_decode + decode) float32
    Precision.parse("fp16,vae=fp32,flow=fp32")
    Precision.from_flags("fp16", vae_precision="bf16")   # what svsr-export / svsr-run flags give
    Precision("auto").resolve(available)   # auto -> fp16 > bf16 > fp32 per graph, where available

The rule "the VAE is guide_decode + decode + decode_stats, flow is RAFT at every scale (flow,
flow_x2, flow_x1), warp and blend are always float32 (pixel coordinates and tile sums), denoise is
the rest (denoise + denoise_stats)" is written here only. A stats graph runs in its network's
precision: its statistics are what that network's tiles normalise with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Union

from svsr.contract.errors import InputError
from svsr.contract.graphs import FLOAT32_ONLY_GRAPHS, GRAPH_NAMES

PRECISIONS = ("fp32", "fp16", "bf16")
AUTO = "auto"
CHOICES = (AUTO, *PRECISIONS)
LOW_PRECISIONS = ("fp16", "bf16")
VAE_GRAPHS = ("guide_decode", "decode", "decode_stats")
FLOW_GRAPHS = ("flow", "flow_x2", "flow_x1")
DENOISE_GRAPHS = ("denoise", "denoise_stats")
# graphs that always share one precision, each family named by its first graph (and its flag)
FAMILIES = {"denoise": DENOISE_GRAPHS, "guide_decode": VAE_GRAPHS, "flow": FLOW_GRAPHS}
_FAMILY_TEXT = {"denoise": "the UNet graphs ({}) run in one precision (--precision)",
                "guide_decode": "the VAE graphs ({}) run in one precision (--vae-precision)",
                "flow": "the flow graphs ({}) run in one precision (--flow-precision)"}  # fmt: skip
# what `auto` picks per graph, where available (TensorRT engines): the fastest first
AUTO_PREFERENCE = ("fp16", "bf16", "fp32")

PrecisionLike = Union["Precision", str, Mapping[str, str], None]


def _check(value: str | None, what: str, allow_auto: bool) -> None:
    allowed = CHOICES if allow_auto else PRECISIONS
    if value is not None and value not in allowed:
        raise InputError(f"{what} {value!r} is not a precision; use one of {', '.join(allowed)}.")


@dataclass(frozen=True)
class Precision:
    """``default`` for every graph (``auto`` = decide per graph later), ``vae`` and ``flow`` overriding it."""

    default: str = "fp32"
    vae: str | None = None  # guide_decode + decode
    flow: str | None = None

    def __post_init__(self) -> None:
        _check(self.default, "precision", allow_auto=True)
        _check(self.vae, "VAE precision", allow_auto=False)
        _check(self.flow, "flow precision", allow_auto=False)
        if self.default == AUTO and (self.vae is not None or self.flow is not None):
            raise InputError(
                "the VAE and flow precisions override a fixed precision, not auto; give --precision fp32, fp16 or bf16 too."
            )

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def from_flags(cls, precision: str | None = "fp32", vae_precision: str | None = None, flow_precision: str | None = None) -> "Precision":
        """From ``--precision``, ``--vae-precision`` and ``--flow-precision``; overrides equal to the default collapse."""
        default = precision or "fp32"
        _check(default, "--precision", allow_auto=True)
        _check(vae_precision, "--vae-precision", allow_auto=False)
        _check(flow_precision, "--flow-precision", allow_auto=False)
        return cls(default, None if vae_precision == default else vae_precision, None if flow_precision == default else flow_precision)

    @classmethod
    def from_per_graph(cls, per_graph: Mapping[str, str]) -> "Precision":
        """From ``{graph: precision}``; the graphs of one family (FAMILIES) must agree, a family left out
        is fp32 and a graph left out takes its family's precision; warp and blend are fp32."""
        unknown = set(per_graph) - set(GRAPH_NAMES)
        if unknown:
            raise InputError(f"unknown graph(s) {', '.join(sorted(unknown))} in a precision mapping; graphs are {', '.join(GRAPH_NAMES)}.")
        get = {g: per_graph.get(g, "fp32") for g in GRAPH_NAMES}
        for head, members in FAMILIES.items():
            given = [(g, per_graph[g]) for g in members if g in per_graph]
            for graph, value in given[1:]:
                if value != given[0][1]:
                    raise InputError(
                        f"{given[0][0]} is {given[0][1]} but {graph} is {value}; {_FAMILY_TEXT[head].format(', '.join(members))}."
                    )
            for graph in members:
                get[graph] = given[0][1] if given else "fp32"
        for graph in FLOAT32_ONLY_GRAPHS:
            if get[graph] != "fp32":
                raise InputError(f"{graph} is {get[graph]}, but the {graph} graph always runs in fp32; leave it out of the precision mapping.")
        return cls.from_flags(get["denoise"], get["guide_decode"], get["flow"])

    @classmethod
    def parse(cls, value: PrecisionLike) -> "Precision":
        """A Precision from itself, None (fp32), a string (``fp16`` or ``fp16,vae=fp32,flow=bf16``) or a mapping."""
        if isinstance(value, Precision):
            return value
        if value is None:
            return cls()
        if isinstance(value, Mapping):
            return cls.from_per_graph(value)
        if not isinstance(value, str):
            raise InputError(f"a precision is a string like 'fp16' or 'fp16,vae=fp32', not {type(value).__name__}.")
        head, *rest = [part.strip() for part in value.split(",")]
        overrides: dict[str, str] = {}
        for part in rest:
            key, sep, val = part.partition("=")
            if not sep or key not in ("vae", "flow"):
                raise InputError(f"precision {value!r} is malformed; write it like 'fp16' or 'fp16,vae=fp32,flow=fp32'.")
            overrides[key] = val
        return cls.from_flags(head, overrides.get("vae"), overrides.get("flow"))

    @classmethod
    def from_manifest(cls, entry: Mapping[str, str]) -> "Precision":
        """Inverse of :meth:`to_manifest`."""
        return cls.from_per_graph(entry)

    # -- asking -----------------------------------------------------------------------------------
    @property
    def is_auto(self) -> bool:
        return self.default == AUTO

    def of(self, graph: str) -> str:
        """The precision of ``graph``; ``auto`` must be resolved first."""
        if graph not in GRAPH_NAMES:
            raise KeyError(graph)
        if graph in FLOAT32_ONLY_GRAPHS:
            return "fp32"
        if self.is_auto:
            raise ValueError("precision auto is decided per backend; call resolve() first")
        if graph in VAE_GRAPHS and self.vae is not None:
            return self.vae
        if graph in FLOW_GRAPHS and self.flow is not None:
            return self.flow
        return self.default

    def per_graph(self) -> dict[str, str]:
        """``{graph: precision}`` for every graph."""
        return {g: self.of(g) for g in GRAPH_NAMES}

    def typed(self) -> dict[str, str]:
        """The graphs that need a typed (fp16/bf16) ONNX file, with their precision."""
        return {g: p for g, p in self.per_graph().items() if p != "fp32"}

    @property
    def is_fp32(self) -> bool:
        return not self.is_auto and not self.typed()

    def resolve(self, available: Callable[[str, str], bool]) -> "Precision":
        """``auto`` -> per graph the first of fp16, bf16, fp32 that ``available(graph, precision)`` allows.

        A fixed precision is returned unchanged. ``available`` answers for one backend, e.g.
        "has an engine of this precision been built" for TensorRT; fp32 is always the fallback.
        """
        if not self.is_auto:
            return self
        # a family takes the first precision every one of its graphs has (its graphs run in one precision)
        chosen = {
            g: next((p for p in AUTO_PREFERENCE if all(available(m, p) for m in members)), "fp32") for members in FAMILIES.values() for g in members
        }
        return Precision.from_per_graph(chosen)

    # -- writing ----------------------------------------------------------------------------------
    def flags(self) -> list[str]:
        """The svsr-export / svsr-run options that give this precision."""
        args = ["--precision", self.default]
        if self.vae is not None:
            args += ["--vae-precision", self.vae]
        if self.flow is not None:
            args += ["--flow-precision", self.flow]
        return args

    def to_manifest(self) -> dict[str, str]:
        """``{graph: precision}``, as recorded in manifest.json."""
        return self.per_graph()

    def describe(self) -> str:
        if self.is_auto:
            return "auto"
        return ", ".join(f"{g} {p}" for g, p in self.per_graph().items())

    def __str__(self) -> str:
        parts = [self.default]
        if self.vae is not None:
            parts.append(f"vae={self.vae}")
        if self.flow is not None:
            parts.append(f"flow={self.flow}")
        return ",".join(parts)
