"""Errors a user sees. Each names what was wrong and where, in plain words.

Every error the library raises on bad input derives from ``SamBatchError`` so the
runtime can record it against one video (``videos/`` status ``failed``) without
stopping the others, and the CLI can print it without a traceback.
"""

from __future__ import annotations


class SamBatchError(Exception):
    """Base of every error caused by input, configuration or environment."""


class VideoError(SamBatchError):
    """A video cannot be opened, probed or decoded as asked."""

    def __init__(self, video: str, message: str, field: str | None = None):
        self.video = video
        self.message = message
        self.field = field
        where = f"{video}" if field is None else f"{video} ({field})"
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple:
        # Crosses process boundaries (Ray) with its own arguments, not the message.
        return (type(self), (self.video, self.message, self.field))


class PromptError(SamBatchError):
    """A prompt does not fit its video (frame, coordinates, shape, object id)."""


class ManifestError(SamBatchError):
    """A manifest row or field is invalid; the message names both."""


class ConfigError(SamBatchError):
    """A job configuration value is invalid or missing."""


class ModelError(SamBatchError):
    """A model cannot be built or a checkpoint cannot be loaded."""


class StateMismatchError(SamBatchError):
    """A memory state was made by another model or format and cannot be continued."""


class ClusterLostError(SamBatchError):
    """The Ray cluster (its head, the GCS) went away under a running job."""
