"""Calibration and held-out code.

Default: the running Python's standard library, split exactly as the stock-tool baseline
(docs/quantization-baseline.md): `random.Random(0)` shuffle of the sorted `lib/pythonX.Y/*.py`, the first 40 files
for calibration (first 400,000 characters of their concatenation), the next 40 held out (first 160,000 characters).
Files the user names replace the calibration side; the held-out side stays the standard library, minus any file the
user named, so evaluation never sees calibration text.
"""

from __future__ import annotations

import glob
import hashlib
import os
import random
import sysconfig
from dataclasses import dataclass, field

from .errors import CalibrationError

CALIB_FILES = 40
CALIB_CHARS = 400_000
HELDOUT_FILES = 40
HELDOUT_CHARS = 160_000


@dataclass
class Corpus:
    calibration: str
    heldout: str
    calibration_files: list[str] = field(default_factory=list)
    heldout_files: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {
            "calibration_files": len(self.calibration_files),
            "calibration_chars": len(self.calibration),
            "calibration_sha256": hashlib.sha256(self.calibration.encode()).hexdigest()[:16],
            "heldout_files": len(self.heldout_files),
            "heldout_chars": len(self.heldout),
            "heldout_sha256": hashlib.sha256(self.heldout.encode()).hexdigest()[:16],
            "heldout_first": os.path.basename(self.heldout_files[0]) if self.heldout_files else None,
        }


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def stdlib_files() -> list[str]:
    lib = sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob(os.path.join(lib, "*.py")))
    random.Random(0).shuffle(files)
    return files


def _expand(paths: list[str]) -> list[str]:
    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, _dirs, names in os.walk(p):
                out.extend(os.path.join(root, n) for n in sorted(names) if not n.startswith("."))
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise CalibrationError(f"calibration path not found: {p}")
    return sorted(set(out))


def build(calibration_paths: list[str] | None = None, calib_chars: int = CALIB_CHARS,
          heldout_chars: int = HELDOUT_CHARS) -> Corpus:
    files = stdlib_files()
    if len(files) < CALIB_FILES + HELDOUT_FILES:
        raise CalibrationError(f"the Python standard library here has only {len(files)} modules; name --calibration files")
    if calibration_paths:
        cfiles = _expand(calibration_paths)
        texts = []
        for p in cfiles:
            try:
                texts.append(_read(p))
            except OSError as exc:
                raise CalibrationError(f"cannot read calibration file {p}: {exc.strerror}") from None
        calibration = "".join(texts)[:calib_chars]
        taken = {os.path.realpath(p) for p in cfiles}
        hfiles = [f for f in files[CALIB_FILES:] if os.path.realpath(f) not in taken][:HELDOUT_FILES]
    else:
        cfiles = files[:CALIB_FILES]
        calibration = "".join(_read(f) for f in cfiles)[:calib_chars]
        hfiles = files[CALIB_FILES:CALIB_FILES + HELDOUT_FILES]
    heldout = "".join(_read(f) for f in hfiles)[:heldout_chars]
    if len(calibration) < 2000:
        raise CalibrationError(f"calibration text too short ({len(calibration)} characters)")
    return Corpus(calibration, heldout, cfiles, hfiles)


def chunks(tokens: list[int], n_ctx: int, limit: int | None = None) -> list[list[int]]:
    """Consecutive non-overlapping chunks of n_ctx tokens (the tail that does not fill a chunk is dropped)."""
    n = len(tokens) // n_ctx
    if limit is not None:
        n = min(n, limit)
    return [tokens[i * n_ctx:(i + 1) * n_ctx] for i in range(n)]
