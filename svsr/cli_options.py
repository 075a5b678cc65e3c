"""Option values checked at the door: every command-line value is parsed and bounded before any work.

Each ``type=`` here turns a malformed or out-of-range value into one sentence that names the
allowed range; :class:`SentenceParser` prints argparse's own errors (unknown option, missing value,
bad choice) as one line too, instead of a usage dump.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from fractions import Fraction
from typing import Any, Callable, NoReturn

SEED_MAX = 2**64 - 1  # Philox keys are 64 bits; numpy and torch accept the same range
MAX_STEPS = 10_000  # parse-time bound; the scheduler's num_train_timesteps is checked against the manifest
CRF_RANGE = {"h264": (0, 51), "h265": (0, 51), "vp9": (0, 63), "ffv1": (0, 63)}  # ffv1 is lossless: crf is ignored
ENCODERS = {"h264": "libx264", "h265": "libx265", "ffv1": "ffv1", "vp9": "libvpx-vp9"}
OPSETS = (17, 20)  # the TorchScript exporter's range that the graphs are tested with


class SentenceParser(argparse.ArgumentParser):
    """argparse, but its errors are one line: ``svsr: error: PROG: ...; see PROG --help.``"""

    def error(self, message: str) -> NoReturn:
        message = message.rstrip(".")
        print(f"svsr: error: {self.prog}: {message}; see {self.prog} --help.", file=sys.stderr)
        raise SystemExit(2)


def _bad(text: str, what: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"{text!r} is not {what}")


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """A whole number in ``low..high``."""

    def parse(text: str) -> int:
        try:
            value = int(str(text).strip(), 10)
        except ValueError:
            raise _bad(text, f"a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise _bad(text, f"a whole number from {low} to {high}")
        return value

    parse.__name__ = f"int {low}..{high}"
    return parse


def bounded_float(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """A finite number in ``low..high`` (``low`` excluded with ``low_open``)."""
    what = f"a number {'above' if low_open else 'from'} {low:g} {'and at most' if low_open else 'to'} {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _bad(text, what) from None
        if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            raise _bad(text, what)
        return value

    parse.__name__ = f"float {low}..{high}"
    return parse


def memory_size(text: str) -> int:
    """``512M``, ``8G``, ``1.5G``: a positive size of at least 1 MiB."""
    from svsr.contract.errors import InputError
    from svsr.runtime.sampling import parse_memory_size

    try:
        value = parse_memory_size(text)
    except InputError:
        raise _bad(text, "a memory size like 512M, 8G or 1.5G") from None
    if value < 2**20:
        raise _bad(text, "a memory size of at least 1M")
    return value


def frame_rate(text: str) -> Fraction:
    """``24``, ``29.97`` or ``30000/1001``: a rate above 0 and at most 1000 frames per second."""
    try:
        value = Fraction(str(text).strip()).limit_denominator(1_000_000)
    except (ValueError, ZeroDivisionError):
        raise _bad(text, "a frame rate like 24, 29.97 or 30000/1001") from None
    if not 0 < value <= 1000:
        raise _bad(text, "a frame rate above 0 and at most 1000")
    return value


def lr_size(text: str) -> str:
    """``WxH`` of the low-resolution frames, each side at least 32 px (checked again where it is used)."""
    from svsr.contract.errors import InputError
    from svsr.contract.profiles import parse_size

    try:
        parse_size(text, "the size")
    except InputError:
        raise _bad(text, "a size WIDTHxHEIGHT with both sides at least 32, like 320x180") from None
    return text


def batch_range(text: str) -> str:
    from svsr.contract.errors import InputError
    from svsr.contract.profiles import parse_batch

    try:
        parse_batch(text)
    except InputError:
        raise _bad(text, "a batch size N or MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX") from None
    return text


def trt_version(text: str) -> str:
    if not re.fullmatch(r"(10|11)(\.\d{1,3})?", str(text).strip()):
        raise _bad(text, "a TensorRT version 11, 10 or 10.N")
    return str(text).strip()


def ray_address(text: str) -> str:
    """``local``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``."""
    value = str(text).strip()
    if value in ("local", "auto") or re.fullmatch(r"(ray://)?[\w.\-\[\]:]+:\d{1,5}", value):
        return value
    raise _bad(text, "local, auto or a Ray address like 10.0.0.1:6379 or ray://head:10001")


def check_codec(codec: str, crf: int) -> None:
    """The codec is encodable by this PyAV build and ``crf`` is in its range (InputError otherwise)."""
    import av

    from svsr.contract.errors import InputError

    low, high = CRF_RANGE[codec]
    if not low <= crf <= high:
        raise InputError(f"--crf {crf} is outside {low}..{high} for {codec}; lower is better quality (default 18).")
    try:
        av.codec.Codec(ENCODERS[codec], "w")
    except Exception:  # noqa: BLE001 - any failure means PyAV's FFmpeg cannot encode it
        usable = [name for name, encoder in ENCODERS.items() if _can_encode(encoder)]
        raise InputError(
            f"--codec {codec} needs the {ENCODERS[codec]} encoder, which this PyAV build lacks; use one of {', '.join(usable)}."
        ) from None


def _can_encode(encoder: str) -> bool:
    import av

    try:
        av.codec.Codec(encoder, "w")
        return True
    except Exception:  # noqa: BLE001
        return False


def check_steps_against_scheduler(steps: int, config: dict[str, Any], where: str) -> None:
    """``--steps`` cannot exceed the scheduler's training timesteps (diffusers would fail deep inside)."""
    from svsr.contract.errors import InputError

    from svsr.contract.scheduler import timesteps

    total = int(config.get("num_train_timesteps", MAX_STEPS))
    if steps > total:
        raise InputError(f"--steps {steps} is more than the {total} training timesteps of the scheduler in {where}; use 1 to {total}.")
    try:
        last = int(timesteps(config, steps).max())
    except ValueError as exc:
        raise InputError(f"--steps {steps} does not fit the scheduler in {where} ({exc}); use fewer steps.") from None
    if last >= total:  # 'leading' spacing plus steps_offset can step past the table
        usable = max(s for s in range(1, total + 1) if int(timesteps(config, s).max()) < total)
        raise InputError(
            f"--steps {steps} reaches timestep {last} with the scheduler in {where} (steps_offset "
            f"{config.get('steps_offset', 0)}), beyond its {total} training timesteps; use 1 to {usable}."
        )
