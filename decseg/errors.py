"""User-facing errors. The CLI prints their message (no traceback unless --debug) and exits non-zero."""


class DecsegError(Exception):
    """Base class: the message names the file or key and says what to do."""

    exit_code = 2


class ConfigError(DecsegError):
    """A bad config key, type or value."""


class DataError(DecsegError):
    """A bad image, mask, split or dataset layout."""


class CheckpointError(DecsegError):
    """A checkpoint that is unreadable, untrusted, or from another configuration."""


class PretrainedWeightsError(DecsegError):
    """Pretrained weights that cannot be fetched or do not fit the encoder."""
