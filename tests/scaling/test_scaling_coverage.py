"""Coverage@k, the exp(a·k^b) fit and the PNG plot (numpy + zlib)."""

import struct
import zlib

import numpy as np
import pytest

from codefill.eval.coverage import coverage_at_k, coverage_study, fit_exp_power, plot_coverage, predict


def test_coverage_at_k_is_mean_pass_at_k():
    counts = [(4, 0), (4, 1), (4, 4)]
    cov = coverage_at_k(counts, [1, 2, 4, 8])
    assert cov[1] == pytest.approx((0 + 0.25 + 1) / 3)
    assert cov[2] == pytest.approx((0 + 0.5 + 1) / 3)
    assert cov[4] == pytest.approx(2 / 3)
    assert 8 not in cov  # not estimable from 4 samples


def test_fit_recovers_a_known_curve():
    ks = [1, 2, 4, 8, 16, 32, 64]
    a, b = -1.7, -0.35
    a2, b2 = fit_exp_power(ks, predict(a, b, ks))
    assert a2 == pytest.approx(a, rel=1e-3) and b2 == pytest.approx(b, rel=1e-3)
    with pytest.raises(ValueError):
        fit_exp_power([1, 2], [0.0, 1.0])


def _png_size(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    idat = b""
    pos = 8
    while pos < len(data):
        n = struct.unpack(">I", data[pos : pos + 4])[0]
        tag = data[pos + 4 : pos + 8]
        if tag == b"IDAT":
            idat += data[pos + 8 : pos + 8 + n]
        pos += 12 + n
    return w, h, zlib.decompress(idat) if idat else None


def test_study_prints_fit_and_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    p = rng.beta(0.3, 1.2, size=200)  # per-task success probabilities
    counts = [(64, int(rng.binomial(64, q))) for q in p]
    out = coverage_study(counts, [1, 2, 4, 8, 16, 32, 64], png=str(tmp_path / "cov.png"))
    cov = [out["coverage"][str(k)] for k in (1, 2, 4, 8, 16, 32, 64)]
    assert cov == sorted(cov)
    assert out["fit"]["a"] < 0 and out["fit"]["b"] < 0
    for k in ("1", "8", "64"):
        assert abs(out["fit"]["predicted"][k] - out["coverage"][k]) < 0.05
    w, h, raw = _png_size(tmp_path / "cov.png")
    assert w > 100 and h > 100
    if raw is not None:  # our own writer (matplotlib's PNGs are valid too, just not checked byte by byte)
        assert len(raw) in (h * (1 + 3 * w), h * (1 + 4 * w))


def test_plot_without_fit(tmp_path):
    plot_coverage(str(tmp_path / "c.png"), [1, 2, 4], [0.1, 0.2, 0.3], None)
    assert _png_size(tmp_path / "c.png")[0] > 0
