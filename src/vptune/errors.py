"""Errors raised by vptune: one line, naming the bad value and the fix."""


class VptuneError(Exception):
    """Base class of every error vptune raises on purpose."""


class BackboneError(VptuneError):
    """A backbone id, checkpoint or architecture cannot be used."""


class MethodError(VptuneError):
    """A tuning method or one of its options is invalid."""


class CheckpointMismatchError(VptuneError):
    """A per-task file does not belong to the backbone it is loaded onto."""


class DataError(VptuneError):
    """A dataset folder, split file, image or label is missing or invalid."""


class TrainingError(VptuneError):
    """Training cannot go on (non-finite loss, bad configuration)."""


class TaskFileError(VptuneError):
    """A task cannot join a multi-task model (corrupt file, other backbone) or is not in it."""
