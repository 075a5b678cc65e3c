"""Which codecs of the codec table this machine's FFmpeg (the one inside PyAV) can encode.

The table itself (:data:`svsr.contract.codecs.CODECS`) is pure data; whether an encoder is compiled
into this PyAV build is a fact of the machine, asked once per process and remembered.
"""

from __future__ import annotations

from functools import cache

import av

from svsr.contract.codecs import CODECS

__all__ = ["available_codecs", "encoder_available"]


@cache
def encoder_available(codec: str) -> bool:
    """Whether PyAV's FFmpeg has the encoder of ``codec`` (a name in ``CODECS``; unknown names: False)."""
    entry = CODECS.get(codec)
    if entry is None:
        return False
    try:
        av.codec.Codec(entry.encoder, "w")
    except Exception:  # noqa: BLE001 - any failure means this FFmpeg build cannot encode it
        return False
    return True


def available_codecs() -> list[str]:
    """The codec names of ``CODECS`` this machine can encode, in the table's order."""
    return [name for name in CODECS if encoder_available(name)]
