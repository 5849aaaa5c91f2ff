"""One exception hierarchy for blox-env.

Every error a user can trigger is a :class:`BloxError` that also inherits the
matching builtin, so ``except ValueError`` keeps working for code that does not
know about blox-env.
"""

from __future__ import annotations

__all__ = [
    "ArchitectureNotFoundError",
    "BloxError",
    "BuildSpecError",
    "DownloadError",
    "ImageDataFormatError",
    "InvalidActionError",
    "InvalidArchitectureError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "LiveResultMissingError",
    "MissingCostError",
    "MissingMetricError",
    "MissingDependencyError",
    "OutputExistsError",
    "PartialReleaseError",
    "PredictorFolderError",
    "PredictorNotFittedError",
    "ReleaseFormatError",
    "StoreBusyError",
    "StoreCorruptError",
    "StoreError",
    "StoreNotFoundError",
    "StoreReadOnlyError",
    "TrainingDivergedError",
    "UnsafePickleError",
]


class BloxError(Exception):
    """Base class of every error raised on purpose by blox-env."""


class InvalidArgumentError(BloxError, ValueError):
    """A keyword argument has a value outside the allowed set or range."""


class InvalidArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument has the wrong type: an :class:`InvalidArgumentError` that ``except TypeError`` also catches."""


class InvalidArchitectureError(BloxError, ValueError):
    """An architecture description is malformed or not a model of the space."""


class _ReadableKey(KeyError):
    """A KeyError whose message prints as written (KeyError quotes its message)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ArchitectureNotFoundError(BloxError, _ReadableKey):
    """A valid architecture (or hash) is not present in a store or table."""


class InvalidActionError(BloxError, ValueError):
    """An environment action lies outside the action space."""


class StoreError(BloxError, ValueError):
    """A store is malformed or used in a way its mode does not allow."""


class StoreReadOnlyError(StoreError):
    """A write was attempted on a store opened read-only."""


class StoreCorruptError(StoreError):
    """A store's data or metadata is damaged (missing/garbled chunk, bad JSON, wrong shape or checksum).

    The message names the array (and chunk where known) and how to recover
    (re-import or rebuild the store).
    """


class StoreBusyError(StoreError):
    """Another process is writing the store: its writer lock is held, or the array read is being replaced.

    The message names the writer (pid, host) where known; retrying after it finishes succeeds.
    """


class MissingCostError(BloxError, ValueError):
    """An evaluation has no recorded cost, so a budget cannot be charged for it."""


class MissingMetricError(BloxError, ValueError):
    """An evaluated model's reward metric or objective is missing (NaN) in the benchmark."""


class MissingDependencyError(BloxError, ImportError):
    """A feature needs an optional dependency (an extra) that is not installed."""


class StoreNotFoundError(BloxError, FileNotFoundError):
    """No store exists at the given location."""


class ReleaseFormatError(BloxError, ValueError):
    """An official BLOX release file does not follow the documented format."""


class DownloadError(BloxError, OSError):
    """A download failed or produced a file with the wrong size or checksum."""


class TrainingDivergedError(BloxError, FloatingPointError):
    """A training loss became NaN or infinite."""


class PredictorNotFittedError(BloxError, RuntimeError):
    """``predict``/``save`` was called on a predictor that has not been fitted."""


class OutputExistsError(InvalidArgumentError, FileExistsError):
    """The output path holds something a build may not replace (not a blox store, or the source itself)."""


class BuildSpecError(InvalidArgumentError):
    """An existing store or run was built with a different spec than the build asks for."""


class PartialReleaseError(ReleaseFormatError):
    """A release file covers fewer than all 91,125 models, or a seed lacks a file the other seeds have."""


class ImageDataFormatError(BloxError, ValueError):
    """An image data file exists but does not hold what its format promises."""


class UnsafePickleError(ImageDataFormatError):
    """A pickle asked for a global outside the allow-list; nothing from it was executed."""


class LiveResultMissingError(BloxError, _ReadableKey):
    """A live backend replaying recorded results (``replay_only``) was asked for one that was never recorded."""


class PredictorFolderError(InvalidArgumentError):
    """A saved predictor folder is missing, damaged or edited into something that cannot be loaded safely."""
