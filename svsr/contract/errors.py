"""User-facing errors: one sentence that names the problem and the fix."""


class SvsrError(Exception):
    """Base class for errors the command-line tools print as a single sentence and exit non-zero."""

    exit_code = 2


class InputError(SvsrError):
    """The user's input (frames, video, sizes, paths) cannot be processed."""


class CheckpointError(SvsrError):
    """A checkpoint folder or weight file is missing or malformed."""


class ManifestError(SvsrError):
    """A build folder's manifest.json is missing, malformed or does not match what is loaded."""


class MissingDependencyError(SvsrError):
    """An optional extra is needed for the requested feature."""
