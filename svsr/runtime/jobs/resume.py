"""Checkpoints of a video job in its work folder: what was done, with what, so a rerun resumes (torch-free).

After every completed timestep the work folder holds ``checkpoint.json`` (written to a partial name
and renamed, so it is never half-written) beside the latent planes of the clip store. It records the
number of completed steps, the noise source's state, whether the stored flows are complete, and
fingerprints of everything that changes the result: the input, the build folder and the options.
A rerun with equal fingerprints continues bit-identically; any difference is named in one sentence.
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

CHECKPOINT_NAME = "checkpoint.json"
CHECKPOINT_VERSION = 1
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


def prepare_work_dir(folder: Path, restart: bool, spell: Callable[[str, Any], str] = lambda _name, _value: "--work-dir DIR") -> None:
    """Create (or, with ``restart``, empty) the work folder; one sentence (naming the option as ``spell`` writes it) when it cannot be written."""
    if restart and folder.exists():
        shutil.rmtree(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the work folder {folder} ({exc.strerror}); choose a writable one with {spell('work_dir', 'DIR')}.") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"the work folder {folder} is not writable; choose another with {spell('work_dir', 'DIR')}.")


def remove_work_dir(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def options_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """The options that change a result, as JSON-friendly values."""
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in sorted(values.items())}
