"""Option values checked at the door: every command-line value is parsed and bounded before any work.

svsr-run's video options are generated from :class:`svsr.contract.video_options.VideoOptions`
(their bounds live there); the ``type=`` helpers here serve the other options (svsr-export's sizes,
svsr-bench's counts) and turn a malformed or out-of-range value into one sentence that names the
allowed range. :class:`SentenceParser` prints argparse's own errors (unknown option, missing value,
bad choice) as one line too, instead of a usage dump.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Callable, NoReturn

from svsr.contract.errors import InputError
from svsr.contract.video_options import MAX_STEPS, MIN_HOST_MEMORY, SEED_MAX, parse_memory_size

__all__ = ["MAX_STEPS", "OPSETS", "SEED_MAX", "SentenceParser", "batch_range", "bounded_int", "lr_size",
           "memory_size", "ray_address", "trt_version"]  # fmt: skip
OPSETS = (17, 20)  # the TorchScript exporter's range that the graphs are tested with


class SentenceParser(argparse.ArgumentParser):
    """argparse, but its errors are one line ending in the command that lists the options: ``svsr: error: PROG: ...; the options: PROG --help``"""

    def error(self, message: str) -> NoReturn:
        message = message.rstrip(".")
        print(f"svsr: error: {self.prog}: {message}; the options: {self.prog} --help", file=sys.stderr)
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


def memory_size(text: str) -> int:
    """``512M``, ``8G``, ``1.5G``: a positive size of at least 1 MiB (svsr-bench's --host-memory)."""
    try:
        value = parse_memory_size(text)
    except InputError:
        raise _bad(text, "a memory size like 512M, 8G or 1.5G") from None
    if value < MIN_HOST_MEMORY:
        raise _bad(text, "a memory size of at least 1M")
    return value


def lr_size(text: str) -> str:
    """``WxH`` of the low-resolution frames, each side at least 32 px (checked again where it is used)."""
    from svsr.contract.profiles import parse_size

    try:
        parse_size(text, "the size")
    except InputError:
        raise _bad(text, "a size WIDTHxHEIGHT with both sides at least 32, like 320x180") from None
    return text


def batch_range(text: str) -> str:
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
