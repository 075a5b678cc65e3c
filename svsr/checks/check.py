"""One line of svsr-doctor's table, and the small helpers every check module shares."""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from svsr.contract.errors import SvsrError

OK, WARN, FAIL = "OK", "WARN", "FAIL"
STATUSES = (OK, WARN, FAIL)
GIB = 1 << 30

Report = Callable[[str], None]
# A printed fix is "<why>: <command>": the explanation first, so the command after the last ": "
# copies and runs as printed (commands never contain ": "); these are the commands fixes start with.
FIX_COMMANDS = ("pip", "svsr-export", "svsr-run", "svsr-doctor", "nvidia-smi", "apt-get")
DOCTOR_JSON = "svsr-doctor --json doctor.json"
BUG_REPORT = f"attach the doctor.json it writes to a bug report: {DOCTOR_JSON}"


def fix(why: str, command: str) -> str:
    """One fix line: what to do and why, then the command that does it."""
    return f"{why}: {command}" if why else command


def bug_report(why: str) -> str:
    """The fix of a failure that is svsr's bug: say what broke, then how to write the report's JSON."""
    return fix(f"{why}; attach the doctor.json it writes to a bug report", DOCTOR_JSON)


def fix_command(text: str) -> str:
    """The command of a printed fix: what follows its last ": " (the whole line when there is no explanation)."""
    return text.rsplit(": ", 1)[-1]


def doctor_command(work_dir: Any = None, model: Any = None) -> str:
    """``svsr-doctor`` with the options that re-run the same checks (shell-quoted where needed)."""
    import shlex

    parts = ["svsr-doctor"]
    if work_dir is not None:
        parts += ["--work-dir", shlex.quote(str(work_dir))]
    if model is not None:
        parts += ["--model", shlex.quote(str(model))]
    return " ".join(parts)


def silent(_message: str) -> None:
    """A progress report that says nothing."""


@dataclass
class Check:
    """What was checked, OK / WARN / FAIL, what was found, how to fix it."""

    name: str
    status: str
    value: str
    fix: str = ""
    figures: dict[str, Any] = field(default_factory=dict)  # numbers behind the value (JSON only)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status {self.status!r} is not one of {', '.join(STATUSES)}")
        self.value = " ".join(str(self.value).split())
        self.fix = " ".join(str(self.fix).split())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def sentence(exc: BaseException) -> str:
    """An exception as one line: svsr's own sentences as they are, anything else with its type."""
    if isinstance(exc, SvsrError):
        return str(exc)
    what = " ".join(str(exc).split())[:300] or "no message"
    return f"{type(exc).__name__}: {what}"


def module_version(module: str) -> str | None:
    """The version of an importable module ("installed" when it has none), or None when it does not import."""
    try:
        return str(getattr(importlib.import_module(module), "__version__", "installed"))
    except Exception:  # noqa: BLE001 - missing or broken: not available
        return None


def cc_tuple(cc: str | None) -> tuple[int, int] | None:
    """ "8.6" -> (8, 6); None for anything else."""
    if not cc:
        return None
    try:
        major, minor = (int(p) for p in str(cc).split(".")[:2])
    except ValueError:
        return None
    return major, minor
