"""Plots without matplotlib: an RGB image as a numpy array, a few drawing helpers, and a PNG writer (zlib).

matplotlib is not a codefill dependency. The coverage plot (eval/coverage.py) and the quantization report's
quality-against-size plot (quantize/report.py) use it when it is installed and fall back to these helpers otherwise.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

# 3x5 glyphs for axis labels: rows top to bottom, 3 bits each (4 = left column). Other characters leave a blank.
FONT = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7), "4": (5, 5, 7, 1, 1),
    "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1), "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7),
    ".": (0, 0, 0, 0, 2), "%": (5, 1, 2, 4, 5), "k": (4, 5, 6, 5, 5), "=": (0, 7, 0, 7, 0), " ": (0, 0, 0, 0, 0),
    "-": (0, 0, 7, 0, 0), "e": (0, 7, 5, 6, 7), "M": (5, 7, 7, 5, 5), "B": (6, 5, 6, 5, 6),
}


def write_png(path: str, rgb: np.ndarray) -> None:
    """Write an (h, w, 3) image (values 0..255) as an 8-bit RGB PNG."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(np.uint8).tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as fh:
        fh.write(png)


def text(img: np.ndarray, x: int, y: int, s: str, color=(0, 0, 0), scale: int = 2) -> None:
    """Draw `s` with its top-left corner at (x, y), each glyph 3x5 cells of `scale` pixels, 4 cells apart."""
    for ch in s:
        for r, bits in enumerate(FONT.get(ch, FONT[" "])):
            for col in range(3):
                if bits >> (2 - col) & 1:
                    img[y + r * scale : y + (r + 1) * scale, x + col * scale : x + (col + 1) * scale] = color
        x += 4 * scale


def line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, color, width: int = 2) -> None:
    """A straight line `width` pixels thick, clipped to the image."""
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    h, w, _ = img.shape
    for t in np.linspace(0, 1, n):
        x, y = int(round(x0 + (x1 - x0) * t)), int(round(y0 + (y1 - y0) * t))
        img[max(0, y - width // 2) : min(h, y + width - width // 2), max(0, x - width // 2) : min(w, x + width - width // 2)] = color
