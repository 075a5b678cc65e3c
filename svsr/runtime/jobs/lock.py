"""One writer per output and per work folder: advisory locks on a lock file (torch-free).

A run holds ``fcntl.flock`` on ``lock`` in its work folder (and, when ``--work-dir`` puts the work
folder elsewhere, on ``.NAME.svsr-lock`` beside the output) from before it writes anything until it
is done. The file holds the holder's pid, host and start time, so a second run on the same output or
work folder says in one sentence who holds it and exits without touching a file.

The kernel releases a flock when its process dies, so a lock file whose flock can be taken is stale
by construction: a killed run's lock is taken over (one line says whose it was). A run that ends
normally unlinks its lock file; one found with a holder written in it therefore belonged to a run
that died. Locks are re-entrant within a process (counted per path): a Ray worker that waits for a
shot's lock and then runs the shot code, which takes the same lock, holds it once.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from svsr.contract.errors import InputError

LOCK_NAME = "lock"  # inside a work folder
Report = Callable[[str], None]


class LockedByAnotherRun(InputError):
    """Another live process holds the lock of this output or work folder."""


@dataclass(frozen=True)
class Holder:
    """Who wrote a lock file: pid, host and when it took the lock."""

    pid: int
    host: str
    since: str

    @classmethod
    def parse(cls, text: str) -> "Holder | None":
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        try:
            return cls(int(fields["pid"]), fields["host"], fields["since"])
        except (KeyError, ValueError):
            return None

    def describe(self) -> str:
        return f"process {self.pid} on {self.host} (since {self.since})"


@dataclass
class _Held:
    fd: int
    count: int


_held: dict[str, _Held] = {}
_guard = threading.Lock()


def output_lock_path(output: Path) -> Path:
    """The lock beside an output, used when its work folder is elsewhere (``--work-dir``)."""
    return output.parent / f".{output.name}.svsr-lock"


def acquire(path: Path, what: str, fix: str, *, report: Report | None = None, wait: bool = False, poll: float = 1.0) -> None:
    """Hold the lock file ``path`` (created if needed, with its folder).

    Refused with one sentence naming ``what`` is locked, by whom, and ``fix``; with ``wait`` it polls
    until the holder ends instead. ``report`` hears one line when a dead process's lock is taken over.
    """
    key = os.path.abspath(path)
    with _guard:
        if key in _held:
            _held[key].count += 1
            return
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)  # a waiter may find the folder removed by the run it waited for
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = Holder.parse(_read(fd))
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            if wait:
                time.sleep(poll)
                continue
            who = holder.describe() if holder else "another process"
            raise LockedByAnotherRun(f"{what} is in use by {who}; wait for that run to end or stop it, or {fix}.") from None
        if not _same_file(fd, path):  # the holder unlinked it while we waited: lock the file now at that path
            os.close(fd)
            continue
        break
    stale = Holder.parse(_read(fd))
    if stale is not None and report is not None:
        report(f"svsr-run: took over the lock of {stale.describe()}, which ended without releasing it (a killed run)")
    me = f"pid={os.getpid()}\nhost={socket.gethostname()}\nsince={time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, me, 0)
    os.fsync(fd)
    with _guard:
        _held[key] = _Held(fd, 1)


def release(path: Path) -> None:
    """Let go of ``path`` (once per :func:`acquire`); the last release unlinks the file, then unlocks it."""
    key = os.path.abspath(path)
    with _guard:
        held = _held.get(key)
        if held is None:
            return
        held.count -= 1
        if held.count > 0:
            return
        del _held[key]
    if _same_file(held.fd, path):
        try:
            os.unlink(path)  # unlinked while still locked: a waiter that opened it sees it is gone and reopens
        except FileNotFoundError:
            pass
    os.close(held.fd)


def holds(path: Path) -> bool:
    """Whether this process holds ``path``."""
    return os.path.abspath(path) in _held


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 4096, 0).decode(errors="replace")
    except OSError:
        return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@atexit.register
def _release_all() -> None:
    """A run that ends (Ctrl-C included) leaves no lock file behind; only a killed one does."""
    for key in list(_held):
        _held[key].count = 1
        release(Path(key))
