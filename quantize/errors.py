"""Quantizer failures a user can cause (the CLI exits with codes from 20 up for them, cli/common.py)."""

from __future__ import annotations

from codefill.engine.errors import CodefillError, ConfigError, DownloadError, ModelFormatError, ModelNotFoundError

__all__ = [
    "QuantizeError", "UnsupportedArchitectureError", "MissingFilesError", "DiskSpaceError", "CalibrationError",
    "TargetSizeError", "ConfigError", "DownloadError", "ModelFormatError", "ModelNotFoundError",
]


class QuantizeError(CodefillError):
    """Base class of the quantizer's own failures."""


class UnsupportedArchitectureError(QuantizeError):
    """The Hugging Face model's architecture (or tokenizer) has no converter here."""


class MissingFilesError(QuantizeError):
    """A Hugging Face directory without config, weights or tokenizer."""


class DiskSpaceError(QuantizeError):
    """Not enough free disk for the files to write."""


class CalibrationError(QuantizeError):
    """No usable calibration or held-out text."""


class TargetSizeError(QuantizeError):
    """--target-size cannot be met by any mix of the candidate types."""
