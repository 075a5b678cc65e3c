"""The one precision type: flags -> per graph -> flags, auto resolution, manifest round trip."""

from __future__ import annotations

import itertools

import pytest

from svsr.contract.errors import InputError
from svsr.contract.graphs import FLOAT32_ONLY_GRAPHS, GRAPH_NAMES
from svsr.contract.precision import PRECISIONS, Precision


@pytest.mark.parametrize(
    "flags",
    [(p, v, f) for p, v, f in itertools.product(PRECISIONS, (None, *PRECISIONS), (None, *PRECISIONS))],
)
def test_flags_to_per_graph_and_back(flags):
    precision = Precision.from_flags(*flags)
    default, vae, flow = flags
    assert precision.per_graph() == {
        "flow": flow or default,
        "flow_x2": flow or default,  # every flow scale is RAFT
        "flow_x1": flow or default,
        "denoise": default,
        "denoise_stats": default,  # a stats graph runs in its network's precision
        "guide_decode": vae or default,
        "decode_stats": vae or default,
        "warp": "fp32",  # pixel coordinates: always float32
        "decode": vae or default,
        "blend": "fp32",  # tile sums: always float32
    }
    args = precision.flags()
    again = Precision.from_flags(*(args[args.index(f) + 1] if f in args else None for f in ("--precision", "--vae-precision", "--flow-precision")))
    assert again == precision
    assert Precision.from_manifest(precision.to_manifest()) == precision
    assert Precision.parse(str(precision)) == precision


def test_overrides_equal_to_the_default_collapse():
    assert Precision.from_flags("fp16", "fp16", "fp16") == Precision("fp16")
    assert Precision.from_flags("fp16", "fp16", "fp16").flags() == ["--precision", "fp16"]


def test_typed_graphs_and_fp32():
    assert Precision("fp32").is_fp32 and Precision("fp32").typed() == {}
    assert Precision("fp16", vae="fp32").typed() == {"flow": "fp16", "flow_x2": "fp16", "flow_x1": "fp16", "denoise": "fp16", "denoise_stats": "fp16"}
    assert not Precision("auto").is_fp32


def test_auto_resolves_per_graph_to_the_fastest_available():
    built = {("denoise", "fp16"), ("denoise", "bf16"), ("denoise_stats", "fp16"), ("denoise_stats", "bf16"), ("guide_decode", "bf16"),
             ("decode", "bf16"), ("decode_stats", "bf16"), ("decode_stats", "fp16"), ("flow", "fp32"), ("flow", "fp16"),
             ("flow_x2", "fp16"), ("warp", "fp16"), ("blend", "bf16")}  # fmt: skip
    chosen = Precision("auto").resolve(lambda g, p: (g, p) in built)
    # warp and blend stay fp32 even where a low-precision engine of them turns up; a family (the VAE graphs,
    # the flow scales) takes the fastest precision all its graphs have: flow_x1 has no fp16 engine
    assert chosen.per_graph() == {"flow": "fp32", "flow_x2": "fp32", "flow_x1": "fp32", "denoise": "fp16", "denoise_stats": "fp16",
                                  "guide_decode": "bf16", "decode_stats": "bf16", "warp": "fp32", "decode": "bf16", "blend": "fp32"}  # fmt: skip
    assert Precision("auto").resolve(lambda g, p: False) == Precision("fp32")
    assert Precision("bf16").resolve(lambda g, p: False) == Precision("bf16")  # fixed stays fixed
    with pytest.raises(ValueError, match="resolve"):
        Precision("auto").of("denoise")


def test_bad_values_are_one_sentence():
    with pytest.raises(InputError, match="'int8' is not a precision"):
        Precision.from_flags("fp16", vae_precision="int8")
    with pytest.raises(InputError, match="override a fixed precision"):
        Precision("auto", vae="fp32")
    with pytest.raises(InputError, match=r"^guide_decode is fp16 but decode is fp32; the VAE graphs \(guide_decode, decode, decode_stats\) run in one precision \(--vae-precision\)\.$"):
        Precision.parse({"guide_decode": "fp16", "decode": "fp32"})
    with pytest.raises(InputError, match=r"denoise is bf16 but denoise_stats is fp16; the UNet graphs .* \(--precision\)"):
        Precision.parse({"denoise": "bf16", "denoise_stats": "fp16"})
    with pytest.raises(InputError, match=r"flow is fp16 but flow_x1 is fp32; the flow graphs \(flow, flow_x2, flow_x1\) run in one precision"):
        Precision.parse({"flow": "fp16", "flow_x1": "fp32"})
    with pytest.raises(InputError, match="warp graph always runs in fp32"):
        Precision.parse({"denoise": "fp16", "warp": "fp16"})
    with pytest.raises(InputError, match="malformed"):
        Precision.parse("fp16,unet=fp32")
    with pytest.raises(InputError, match="unknown graph"):
        Precision.parse({"unet": "fp16"})
    with pytest.raises(KeyError):
        Precision("fp16").of("unet")


def test_parse_takes_every_form():
    assert Precision.parse(None) == Precision("fp32")
    assert Precision.parse("fp16,vae=fp32,flow=bf16") == Precision("fp16", vae="fp32", flow="bf16")
    assert Precision.parse({g: "bf16" for g in GRAPH_NAMES if g not in FLOAT32_ONLY_GRAPHS}) == Precision("bf16")
    # a graph left out of a mapping takes its family's precision, a family left out is fp32
    assert Precision.parse({"denoise": "bf16", "decode": "fp16"}) == Precision("bf16", vae="fp16", flow="fp32")
    assert Precision.parse({"denoise": "bf16", "decode": "fp16"}).of("decode_stats") == "fp16"
    assert Precision("bf16").per_graph() == {g: "fp32" if g in ("warp", "blend") else "bf16" for g in GRAPH_NAMES}
    p = Precision("fp16")
    assert Precision.parse(p) is p
