"""The one exception type users see as a single clear error line.

Library code raises :class:`DiffCXRError` (or a subclass) with a message that names the offending
file/value and, where possible, the fix. The CLI turns it into ``diffcxr: error: <message>`` and a
non-zero exit code instead of a traceback.
"""


class DiffCXRError(Exception):
    """An error caused by the user's input or environment, with a human-readable message."""


class ImageReadError(DiffCXRError):
    """An image file is missing, corrupt, truncated or in an unsupported encoding."""


class ResumeConfigError(DiffCXRError):
    """``--resume`` of a run trained with another model config. ``overrides`` holds the ``model.KEY=VALUE``
    settings that give the run's own config back (empty when a few overrides cannot)."""

    def __init__(self, message: str, overrides: list[str] | None = None):
        super().__init__(message)
        self.overrides = list(overrides or [])


class DatasetError(DiffCXRError):
    """A dataset spec, folder or manifest is missing or malformed."""


class ReportError(DiffCXRError):
    """A report text is empty, too large or otherwise unusable."""
