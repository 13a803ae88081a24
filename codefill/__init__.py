"""codefill: quantized, local, offline fill-in-the-middle code completion."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("codefill")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
