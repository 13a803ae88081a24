"""User-facing failures.

Every failure a user can cause (a bad model file, a bad position, a binary file …) is a `CodefillError` subclass with
its own exit code. The CLI prints `str(error)` on one line and exits with `error.exit_code`; the language server turns
it into an error response or a `window/showMessage`. Anything else escaping the engine is a bug.
"""

from __future__ import annotations


class CodefillError(Exception):
    """Base class: a clear one-line message and a distinct exit code."""

    exit_code = 1


class ModelNotFoundError(CodefillError):
    exit_code = 3


class ModelUnreadableError(CodefillError):
    exit_code = 4


class ModelFormatError(CodefillError):
    """The file exists and is readable but is not a (valid) GGUF model."""

    exit_code = 5


class ModelLoadError(CodefillError):
    """llama.cpp refused the model (unsupported architecture, out of memory …)."""

    exit_code = 6


class InputFileError(CodefillError):
    """The file to complete is missing or unreadable."""

    exit_code = 7


class BinaryFileError(CodefillError):
    """The file to complete is not UTF-8 text."""

    exit_code = 8


class EmptyFileError(CodefillError):
    exit_code = 9


class PositionError(CodefillError):
    """A line/column outside the document."""

    exit_code = 10


class DownloadError(CodefillError):
    exit_code = 11


class ConfigError(CodefillError):
    exit_code = 12


class DocumentTooLargeError(CodefillError):
    exit_code = 13
