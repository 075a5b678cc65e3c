"""Checkpoints of a video job in its work folder: what was done, with what, so a rerun resumes (torch-free).

After every completed timestep the work folder holds ``checkpoint.json`` (written to a partial name
and renamed, so it is never half-written) beside the latent planes of the clip store. It records the
number of completed steps, the noise source's state, whether the stored flows are complete, and
fingerprints of everything that changes the result: the input, the build folder and the options.
A rerun with equal fingerprints continues bit-identically; any difference is named in one sentence.

Nothing in a work folder is trusted unverified: the checkpoint records, for every file it relies on,
its size and a CRC-32 per frame record (written and flushed before the checkpoint is renamed into
place), and every finished shot's segment has a record of its size and BLAKE2b digest beside it
(``.NAME.check``). A resumed run checks them first; what does not match is done again, with one line
saying which file was damaged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from svsr.contract.errors import InputError
from svsr.runtime.jobs import lock

CHECKPOINT_NAME = "checkpoint.json"
CHECKPOINT_VERSION = 2  # 2: checksums of the files it relies on
WORK_SUFFIX = ".svsr-work"
OPAQUE_OPTIONS = ("noise state",)  # recorded as digests: a difference is named, its values are not
_EDGE_BYTES = 4 << 20  # input fingerprint: size, mtime and the first and last 4 MiB


def default_work_dir(output: Path) -> Path:
    """The work folder beside the output, named after it: ``out/.clip_x4.mp4.svsr-work``."""
    return output.parent / f".{output.name}{WORK_SUFFIX}"


def input_fingerprint(path: Path) -> str:
    """A cheap identity of a video file (size, mtime, head and tail bytes) or a frame folder (names, sizes)."""
    digest = hashlib.sha256()
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.is_file():
                stat = child.stat()
                digest.update(f"{child.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()
    stat = path.stat()
    digest.update(f"{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    with open(path, "rb") as f:
        digest.update(f.read(_EDGE_BYTES))
        if stat.st_size > 2 * _EDGE_BYTES:
            f.seek(-_EDGE_BYTES, os.SEEK_END)
            digest.update(f.read(_EDGE_BYTES))
    return digest.hexdigest()


def build_fingerprint(build_dir: Path | None, label: str) -> str:
    """The build folder's manifest (graph and engine sha256s inside) and which backend runs it."""
    digest = hashlib.sha256(label.encode())
    if build_dir is not None:
        digest.update((build_dir / "manifest.json").read_bytes())
    return digest.hexdigest()


@dataclass
class Checkpoint:
    """What a work folder says about an interrupted job."""

    input: str
    build: str
    options: dict[str, Any]
    num_frames: int
    height: int
    width: int
    steps_done: int = 0  # completed timesteps; the latents of plane steps_done % 2 hold them
    noise_state: dict[str, Any] = field(default_factory=dict)
    flows_done: bool = False  # stored flows (in files) are complete
    files: dict[str, Any] = field(default_factory=dict)  # file name -> size and per-frame CRC-32s (ClipStore.records)
    version: int = CHECKPOINT_VERSION

    def differences(self, other: "Checkpoint") -> list[str]:
        """What makes ``other`` (today's job) a different job than this checkpoint's: each option as ``steps 4 -> 2``."""
        found = []
        if self.version != other.version:
            found.append(f"checkpoint format {self.version} -> {other.version}")
        if self.input != other.input:
            found.append("input (the file or frames changed since)")
        if self.build != other.build:
            found.append("model (another build folder, engines or backend)")
        for key in sorted(set(self.options) | set(other.options)):
            then, now = self.options.get(key, "unset"), other.options.get(key, "unset")
            if then != now:
                # a custom noise source is known by a digest of its state only: say it changed, not the digests
                found.append(f"{key} (another state)" if key in OPAQUE_OPTIONS else f"{key} {then} -> {now}")
        if (self.num_frames, self.height, self.width) != (other.num_frames, other.height, other.width):
            found.append(f"frames {self.num_frames} of {self.width}x{self.height} -> {other.num_frames} of {other.width}x{other.height}")
        return found


def save_checkpoint(folder: Path, checkpoint: Checkpoint) -> None:
    """Write, flush and rename: a crash leaves the previous checkpoint or this one, never half of one."""
    tmp = folder / f".{CHECKPOINT_NAME}.partial"
    data = (json.dumps(asdict(checkpoint), indent=1) + "\n").encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, folder / CHECKPOINT_NAME)


def load_checkpoint(folder: Path) -> Checkpoint | None:
    """The work folder's checkpoint, or None when there is none (or it is unreadable: start over)."""
    path = folder / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return Checkpoint(**data)
    except (OSError, ValueError, TypeError):
        return None


def open_work_dir(folder: Path, restart: bool, *, what: str, fix: str, spell: Callable[[str, Any], str] = lambda _name, _value: "--work-dir DIR",
                  report: Callable[[str], None] | None = None, wait: bool = False) -> None:  # fmt: skip
    """Create the work folder and hold its lock (:mod:`svsr.runtime.jobs.lock`) before anything in it is written.

    With ``restart`` its contents (but the lock) are discarded once the lock is held. One sentence
    (naming the option as ``spell`` writes it) when it cannot be written; one naming the holder
    (``what`` is in use ...; ``fix``) when another run holds it. Release with :func:`close_work_dir`.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the work folder {folder} ({exc.strerror}); choose a writable one with {spell('work_dir', 'DIR')}.") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"the work folder {folder} is not writable; choose another with {spell('work_dir', 'DIR')}.")
    lock.acquire(folder / lock.LOCK_NAME, what, fix, report=report, wait=wait)
    if restart:
        for child in folder.iterdir():
            if child.name == lock.LOCK_NAME:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def close_work_dir(folder: Path, *, remove: bool = False) -> None:
    """Release the work folder's lock (``remove``: delete the folder first, still holding it)."""
    if remove:
        remove_work_dir(folder)
    lock.release(folder / lock.LOCK_NAME)


def segment_record_path(segment: Path) -> Path:
    return segment.with_name(f".{segment.name}.check")


def _segment_digest(segment: Path) -> dict[str, Any]:
    """Size and BLAKE2b of a segment file, or of a segment folder's files (names included)."""
    digest, size = hashlib.blake2b(digest_size=16), 0
    files = sorted(p for p in segment.rglob("*") if p.is_file()) if segment.is_dir() else [segment]
    for path in files:
        digest.update(f"{path.relative_to(segment) if segment.is_dir() else ''}\0".encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    return {"size": size, "blake2b": digest.hexdigest()}


def record_segment(segment: Path) -> None:
    """Write the finished segment's size and digest beside it (write, flush, rename)."""
    record = segment_record_path(segment)
    tmp = record.with_name(record.name + ".partial")
    with open(tmp, "w") as f:
        json.dump(_segment_digest(segment), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, record)


def segment_damage(segment: Path) -> str | None:
    """None when ``segment`` is a finished segment matching its record; else what is wrong (``missing``: not written)."""
    if not segment.exists():
        return "missing"
    try:
        recorded = json.loads(segment_record_path(segment).read_text())
    except (OSError, ValueError):
        return "it has no record of being complete"
    found = _segment_digest(segment)
    if found["size"] != recorded.get("size"):
        return f"it is {found['size']} bytes, {recorded.get('size')} were written"
    if found["blake2b"] != recorded.get("blake2b"):
        return "its contents differ from the checksum written with it"
    return None


def discard_segment(segment: Path) -> None:
    if segment.is_dir():
        shutil.rmtree(segment, ignore_errors=True)
    else:
        segment.unlink(missing_ok=True)
    segment_record_path(segment).unlink(missing_ok=True)


def remove_work_dir(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def options_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """The options that change a result, as JSON-friendly values."""
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in sorted(values.items())}
