"""User-facing failures.

Every failure a user can cause (a bad model file, a bad position, a binary file …) is a `CodefillError` subclass, one
class per kind of failure. The CLI prints `str(error)` on one line and exits with the code it gives that class
(cli/common.py); the language server turns it into an error response or a `window/showMessage`. Anything else
escaping the engine is a bug.
"""

from __future__ import annotations


class CodefillError(Exception):
    """Base class: a clear one-line message."""


class ModelNotFoundError(CodefillError):
    """No model at the path or name given (or the embedded model is not installed)."""


class ModelUnreadableError(CodefillError):
    """The model path exists but cannot be read (a directory, no permission …)."""


class ModelFormatError(CodefillError):
    """The file exists and is readable but is not a (valid) GGUF model."""


class ModelLoadError(CodefillError):
    """llama.cpp refused the model (unsupported architecture, out of memory …)."""


class InputFileError(CodefillError):
    """The file to complete is missing or unreadable."""


class BinaryFileError(CodefillError):
    """The file to complete is not UTF-8 text."""


class EmptyFileError(CodefillError):
    """The file to complete is empty."""


class PositionError(CodefillError):
    """A line/column outside the document."""


class DownloadError(CodefillError):
    """A model could not be fetched from Hugging Face."""


class ConfigError(CodefillError):
    """The user config file or a setting is invalid."""


class DocumentTooLargeError(CodefillError):
    """The document is too large to complete."""
