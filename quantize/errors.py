"""Quantizer failures a user can cause. Exit codes from 20 up, distinct from the engine's."""

from __future__ import annotations

from codefill.engine.errors import CodefillError, ConfigError, DownloadError, ModelFormatError, ModelNotFoundError

__all__ = [
    "QuantizeError", "UnsupportedArchitectureError", "MissingFilesError", "DiskSpaceError", "CalibrationError",
    "TargetSizeError", "ConfigError", "DownloadError", "ModelFormatError", "ModelNotFoundError",
]


class QuantizeError(CodefillError):
    exit_code = 20


class UnsupportedArchitectureError(QuantizeError):
    """The Hugging Face model's architecture (or tokenizer) has no converter here."""

    exit_code = 21


class MissingFilesError(QuantizeError):
    """A Hugging Face directory without config, weights or tokenizer."""

    exit_code = 22


class DiskSpaceError(QuantizeError):
    exit_code = 23


class CalibrationError(QuantizeError):
    """No usable calibration or held-out text."""

    exit_code = 24


class TargetSizeError(QuantizeError):
    """--target-size cannot be met by any mix of the candidate types."""

    exit_code = 25
