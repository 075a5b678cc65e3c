"""Noise sources: the philox specification (docs/noise.md) and every source's checkpoint state."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from svsr.contract.noise import (
    DEFAULT_NOISE,
    NOISE_KINDS,
    NumpyNoise,
    PhiloxNoise,
    philox4x32_10,
    philox_normal,
)
from svsr.device.noise import make_noise
from tests.support.noise import ExplicitNoise, RecordingNoise

DOC = Path(__file__).resolve().parents[1] / "docs" / "noise.md"
MASK = 0xFFFFFFFF

# Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter, key, expected output.
RANDOM123_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK,) * 4, (MASK, MASK), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


# ---------------------------------------------------------------------------------------------
# an independent scalar reference: plain Python ints and the math module, written from the doc


def _scalar_philox(ctr, key):
    c, (k0, k1) = list(ctr), key
    for rnd in range(10):
        if rnd:
            k0, k1 = (k0 + 0x9E3779B9) & MASK, (k1 + 0xBB67AE85) & MASK
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & MASK, (p0 >> 32) ^ c[3] ^ k1, p0 & MASK]
    return c


def _scalar_normal(seed, d, frame, n):
    out = []
    for b in range(-(-n // 4)):
        x = _scalar_philox((b, frame, d, 0), (seed & MASK, seed >> 32))
        for w1, w2 in ((x[0], x[1]), (x[2], x[3])):
            u1 = ((w1 >> 8) + 1) * 2.0**-24
            u2 = (w2 >> 8) * 2.0**-24
            r = math.sqrt(-2.0 * math.log(u1))
            theta = 6.283185307179586 * u2
            out += [r * math.cos(theta), r * math.sin(theta)]
    return np.array(out[:n], dtype=np.float64).astype(np.float32)


def _bits(array):
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


# ---------------------------------------------------------------------------------------------
# (a) raw Philox4x32-10


@pytest.mark.parametrize("ctr, key, want", RANDOM123_KAT)
def test_philox_known_answers(ctr, key, want):
    assert [int(w) for w in philox4x32_10(ctr, key)] == list(want)
    assert _scalar_philox(ctr, key) == list(want)


def test_philox_vectorised_matches_scalar():
    rng = np.random.default_rng(0)
    ctr = rng.integers(0, 1 << 32, size=(4, 200), dtype=np.uint64)
    key = (0x12345678, 0x9ABCDEF0)
    got = np.stack(philox4x32_10(tuple(ctr), key), axis=1)
    assert got.dtype == np.uint32
    want = [_scalar_philox([int(w) for w in ctr[:, i]], key) for i in range(200)]
    np.testing.assert_array_equal(got, np.array(want, dtype=np.uint32))


# ---------------------------------------------------------------------------------------------
# (b) docs/noise.md test vectors, parsed from the document


def _text_blocks():
    return re.findall(r"```text\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def _doc_block(header):
    blocks = [b for b in _text_blocks() if b.startswith(header)]
    assert len(blocks) == 1, f"docs/noise.md needs exactly one ```text block starting with {header!r}"
    return [line.split() for line in blocks[0].splitlines()[1:] if line.strip()]


def test_doc_raw_philox_words():
    rows = _doc_block("# philox4x32-10")
    assert len(rows) >= 5
    for row in rows:
        assert row[0] == "philox4x32-10" and row[7] == "->"
        ctr = [int(w, 16) for w in row[1:5]]
        key = [int(w, 16) for w in row[5:7]]
        want = [int(w, 16) for w in row[8:12]]
        assert [int(w) for w in philox4x32_10(ctr, key)] == want, row
    # the Random123 lines are among them
    listed = {(tuple(int(w, 16) for w in r[1:5]), tuple(int(w, 16) for w in r[5:7])) for r in rows}
    assert {(c, k) for c, k, _ in RANDOM123_KAT} <= listed


def _doc_vectors():
    vectors: dict[tuple[int, int, int], dict[int, tuple[int, str]]] = {}
    for seed, d, frame, index, bits, value in _doc_block("# seed d frame index"):
        vectors.setdefault((int(seed), int(d), int(frame)), {})[int(index)] = (int(bits, 16), value)
    return vectors


def test_doc_vectors_cover_the_specified_cases():
    vectors = _doc_vectors()
    assert set(vectors) == {(s, d, f) for s in (0, 1, 2**64 - 1) for d in (0, 1, 50) for f in (0, 7)}
    for values in vectors.values():
        assert sorted(values) == list(range(8))
        for bits, value in values.values():
            # the decimal is the same float32 as the bit pattern, with 9 significant digits
            assert _bits(np.float32(float(value))) == bits
            assert len(re.sub(r"^[-0.]*|e.*$|\.", "", value)) == 9


def test_doc_vectors_match_code_bit_for_bit():
    for (seed, d, frame), values in _doc_vectors().items():
        want = np.array([values[i][0] for i in range(8)], dtype=np.uint32)
        got = philox_normal(seed, d, frame, (8,))
        np.testing.assert_array_equal(_bits(got), want, err_msg=f"seed {seed} d {d} frame {frame}")
        # through the source: d = 0 is the initial latent, d = step + 1 the step noise
        noise = PhiloxNoise(seed)
        drawn = noise.initial_latent(frame, (1, 2, 2, 2)) if d == 0 else noise.step_noise(d - 1, frame, (2, 4))
        np.testing.assert_array_equal(_bits(drawn).reshape(-1), want)
        # and the independent scalar reference agrees
        np.testing.assert_array_equal(_bits(_scalar_normal(seed, d, frame, 8)), want)


def test_vectorised_matches_scalar_reference_on_odd_sizes():
    for seed, d, frame, n in [(0, 0, 0, 1), (3, 2, 1, 7), (2**64 - 1, 99, 12, 4099), (2**40 + 5, 1, 3, 1001)]:
        got = philox_normal(seed, d, frame, (n,))
        np.testing.assert_array_equal(_bits(got), _bits(_scalar_normal(seed, d, frame, n)))


# ---------------------------------------------------------------------------------------------
# (c) order independence, shape independence


def test_order_independence():
    shape, frames, steps = (1, 4, 6, 10), 5, 4
    pairs = [(step, frame) for step in range(steps) for frame in range(frames)]
    orders = [pairs, pairs[::-1], [pairs[i] for i in np.random.default_rng(7).permutation(len(pairs))]]
    results = []
    for order in orders:
        noise = PhiloxNoise(42)
        initial = {frame: noise.initial_latent(frame, shape) for frame in reversed(range(frames))}
        steps_drawn = {pair: noise.step_noise(*pair, shape) for pair in order}
        results.append((initial, steps_drawn))
    for initial, steps_drawn in results[1:]:
        for frame in range(frames):
            np.testing.assert_array_equal(initial[frame], results[0][0][frame])
        for pair in pairs:
            np.testing.assert_array_equal(steps_drawn[pair], results[0][1][pair])
    # repeated calls give the same array; a fresh source with the same seed too
    noise = PhiloxNoise(42)
    np.testing.assert_array_equal(noise.step_noise(2, 3, shape), noise.step_noise(2, 3, shape))
    np.testing.assert_array_equal(PhiloxNoise(42).step_noise(2, 3, shape), results[0][1][2, 3])


def test_values_depend_only_on_element_index():
    noise = PhiloxNoise(5)
    small = noise.step_noise(3, 2, (1, 4, 9, 16)).reshape(-1)
    large = noise.step_noise(3, 2, (1, 4, 90, 160)).reshape(-1)
    np.testing.assert_array_equal(large[: small.size], small)
    for n in (1, 2, 3, 5, 6):
        np.testing.assert_array_equal(noise.initial_latent(1, (n,)), noise.initial_latent(1, (8,))[:n])


def test_output_dtype_shape_and_distinct_draws():
    noise = PhiloxNoise(0)
    a = noise.initial_latent(0, (1, 4, 3, 5))
    assert a.dtype == np.float32 and a.shape == (1, 4, 3, 5) and a.flags.c_contiguous
    assert noise.initial_latent(0, (0, 4)).shape == (0, 4)
    b = noise.step_noise(0, 0, (1, 4, 3, 5))  # d = 1, not the initial latent's d = 0
    assert not np.array_equal(a, b)
    assert np.all(np.isfinite(noise.step_noise(0, 0, (100_000,))))


def test_statistics_of_a_million_values():
    z = philox_normal(123, 1, 0, (1_000_000,)).astype(np.float64)
    assert abs(z.mean()) < 0.005  # standard error 0.001
    assert abs(z.std() - 1.0) < 0.005  # standard error ~0.0007
    assert abs(np.mean(z**3)) < 0.02
    assert abs(np.mean(z**4) - 3.0) < 0.05
    assert abs(np.mean(np.abs(z) > 2.0) - 0.0455) < 0.002
    assert abs(np.mean(np.abs(z) > 3.0) - 0.0027) < 0.0005
    # neighbouring elements (same Box-Muller pair, same block, next block) are uncorrelated
    for lag in (1, 2, 3, 4, 5):
        assert abs(np.corrcoef(z[:-lag], z[lag:])[0, 1]) < 0.006, lag
    pairs = z.reshape(-1, 2)
    assert abs(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]) < 0.006


def test_independence_of_frames_draws_and_seeds():
    n = 250_000  # correlation standard error 0.002
    base = philox_normal(1, 1, 0, (n,))
    others = {
        "frame": philox_normal(1, 1, 1, (n,)),
        "draw": philox_normal(1, 2, 0, (n,)),
        "initial": philox_normal(1, 0, 0, (n,)),
        "seed": philox_normal(2, 1, 0, (n,)),
        "seed high word": philox_normal(1 + (1 << 32), 1, 0, (n,)),
        "swapped frame/draw": philox_normal(1, 0, 1, (n,)),
    }
    for name, other in others.items():
        assert abs(np.corrcoef(base, other)[0, 1]) < 0.01, name
        assert np.mean(base == other) < 0.001, name


# ---------------------------------------------------------------------------------------------
# (e) checkpoint state


def _roundtrip(state):
    return json.loads(json.dumps(state))


def _check_resume(make, shape=(1, 4, 5, 6), frames=3, steps=4, interrupt_after=2):
    """Run initial latents + steps; interrupt after a completed timestep; resume on a fresh source."""
    def draws(noise, step_range):
        return [noise.step_noise(step, frame, shape) for step in step_range for frame in range(frames)]

    full = make()
    [full.initial_latent(frame, shape) for frame in range(frames)]
    draws(full, range(interrupt_after))
    state = _roundtrip(full.state())
    expected = draws(full, range(interrupt_after, steps))

    resumed = make()
    resumed.initial_latent(frames - 1, shape)  # a fresh source that has drawn something else
    resumed.restore(state)
    got = draws(resumed, range(interrupt_after, steps))
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)
    return state


def test_philox_state():
    state = _check_resume(lambda: PhiloxNoise(2**64 - 1))
    assert state == {"kind": "philox", "seed": 2**64 - 1}
    noise = PhiloxNoise(0)
    noise.restore(_roundtrip(PhiloxNoise(99).state()))
    assert noise.seed == 99 and noise.kind == "philox"
    np.testing.assert_array_equal(noise.step_noise(1, 2, (9,)), PhiloxNoise(99).step_noise(1, 2, (9,)))


def test_numpy_state():
    state = _check_resume(lambda: NumpyNoise(3))
    assert state["kind"] == "numpy" and NumpyNoise(3).kind == "numpy"


def test_torch_state():
    pytest.importorskip("torch")
    from svsr.device.noise import TorchNoise

    state = _check_resume(lambda: TorchNoise(7))
    assert state["kind"] == "torch" and isinstance(state["generator"], str)
    assert TorchNoise(7).kind == "torch"


def test_explicit_state():
    rng = np.random.default_rng(0)
    shape = (1, 4, 5, 6)
    initial = rng.standard_normal((3, *shape)).astype(np.float32)
    steps = rng.standard_normal((4, 3, *shape)).astype(np.float32)
    state = _check_resume(lambda: ExplicitNoise(initial, steps), shape=shape)
    assert state == {"kind": "explicit"}
    assert ExplicitNoise(initial, steps).kind == "explicit"


@pytest.mark.parametrize("kind", ["philox", "numpy"])
def test_recording_state_delegates(kind):
    state = _check_resume(lambda: RecordingNoise(make_noise(kind, 11)))
    recorder = RecordingNoise(make_noise(kind, 11))
    assert recorder.kind == kind and state["kind"] == kind
    assert recorder.state() == recorder.inner.state()


def test_restore_rejects_another_kind():
    with pytest.raises(ValueError):
        PhiloxNoise(0).restore(NumpyNoise(0).state())
    with pytest.raises(ValueError):
        NumpyNoise(0).restore(PhiloxNoise(0).state())
    with pytest.raises(ValueError):
        PhiloxNoise(0).restore({"kind": "philox", "seed": -1})


# ---------------------------------------------------------------------------------------------
# (f) argument checks; make_noise


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70, 1.5, "3", None, True])
def test_seed_out_of_range(seed):
    with pytest.raises(ValueError, match="seed"):
        PhiloxNoise(seed)
    with pytest.raises(ValueError):
        make_noise("philox", seed)


def test_seed_edges_and_numpy_ints_accepted():
    assert PhiloxNoise(0).seed == 0 and PhiloxNoise(2**64 - 1).seed == 2**64 - 1
    assert PhiloxNoise(np.uint64(2**64 - 1)).seed == 2**64 - 1


def test_negative_indices_rejected():
    noise = PhiloxNoise(0)
    with pytest.raises(ValueError):
        noise.initial_latent(-1, (4,))
    with pytest.raises(ValueError):
        noise.step_noise(-1, 0, (4,))
    with pytest.raises(ValueError):
        noise.step_noise(0, 2**32, (4,))


def test_make_noise_kinds():
    assert NOISE_KINDS == ("philox", "numpy", "torch") and DEFAULT_NOISE == "philox"
    assert isinstance(make_noise("philox", 4), PhiloxNoise) and make_noise("philox", 4).seed == 4
    # numpy unchanged: sequential PCG64 standard normals
    want = np.random.Generator(np.random.PCG64(4)).standard_normal((2, 3), dtype=np.float32)
    np.testing.assert_array_equal(make_noise("numpy", 4).initial_latent(0, (2, 3)), want)
    with pytest.raises(ValueError, match="philox"):
        make_noise("cuda", 0)


def test_make_noise_torch_unchanged():
    torch = pytest.importorskip("torch")
    want = torch.randn((2, 3), generator=torch.Generator("cpu").manual_seed(4), dtype=torch.float32).numpy()
    np.testing.assert_array_equal(make_noise("torch", 4).initial_latent(0, (2, 3)), want)


def test_philox_source_does_not_import_torch():
    code = (
        "import sys; from svsr.contract.noise import DEFAULT_NOISE; from svsr.device.noise import make_noise; "
        "make_noise(DEFAULT_NOISE, 1).step_noise(0, 0, (1, 4, 8, 8)); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
