"""A dependency-free PNG plot: quality (log KLD) against file size, drawn with numpy and written with zlib.

matplotlib is not a codefill dependency; when it is installed, `report.plot` uses it instead (with labels).
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np

# 3x5 digit glyphs for axis tick labels
_DIGITS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    "e": "000111101110111", "M": "101111111101101", "B": "110101110101110",
}

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def write_png(path: str, img: np.ndarray) -> None:
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].astype(np.uint8).tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as fh:
        fh.write(png)


def _text(img: np.ndarray, x: int, y: int, s: str, scale: int = 2, color=(0, 0, 0)) -> None:
    for ch in s:
        g = _DIGITS.get(ch)
        if g is not None:
            for i, bit in enumerate(g):
                if bit == "1":
                    r, c = divmod(i, 3)
                    img[y + r * scale:y + (r + 1) * scale, x + c * scale:x + (c + 1) * scale] = color
        x += 4 * scale


def scatter(path: str, points: list[tuple[float, float, int]], width: int = 720, height: int = 480) -> None:
    """points: (size in MB, mean KLD, colour index). x linear, y log10."""
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    ml, mr, mt, mb = 70, 20, 20, 50
    xs = [p[0] for p in points]
    ys = [math.log10(max(p[1], 1e-6)) for p in points]
    x0, x1 = min(xs) * 0.97, max(xs) * 1.03
    y0, y1 = math.floor(min(ys)), math.ceil(max(ys))
    if y1 == y0:
        y1 += 1

    def px(x, y):
        return (int(ml + (x - x0) / (x1 - x0) * (width - ml - mr)),
                int(height - mb - (y - y0) / (y1 - y0) * (height - mt - mb)))

    img[mt:height - mb, ml] = 0
    img[height - mb, ml:width - mr] = 0
    for e in range(int(y0), int(y1) + 1):
        _, yy = px(x0, e)
        img[yy, ml:width - mr] = (220, 220, 220)
        _text(img, 8, yy - 5, f"1e{e}")
    for k in range(5):
        xv = x0 + (x1 - x0) * k / 4
        xx, _ = px(xv, y0)
        img[height - mb:height - mb + 6, xx] = 0
        _text(img, xx - 16, height - mb + 12, f"{xv:.0f}MB")
    for (x, _, c), y in zip(points, ys):
        cx, cy = px(x, y)
        col = PALETTE[c % len(PALETTE)]
        img[max(cy - 5, 0):cy + 6, max(cx - 5, 0):cx + 6] = col
    write_png(path, img)
