"""The helpers behind `codefill eval humaneval --samples 1,2,4,…,64 --coverage`."""

from dataclasses import dataclass

import pytest

from codefill.eval.coverage import format_study, parse_ks, study_from_records


def test_parse_ks():
    assert parse_ks("1,2,4,…,64") == [1, 2, 4, 8, 16, 32, 64]
    assert parse_ks("1,2,4,...,16") == [1, 2, 4, 8, 16]
    assert parse_ks("16") == [1, 2, 4, 8, 16]
    assert parse_ks("1, 3,5") == [1, 3, 5]
    for bad in ("", "0,2", "a,b"):
        with pytest.raises(ValueError):
            parse_ks(bad)


@dataclass
class S:
    passed: bool


@dataclass
class R:
    samples: list


def test_study_from_records_prints_coverage_fit_and_plot(tmp_path):
    # 4 tasks × 8 samples: 0, 1, 4 and 8 correct.
    recs = [R([S(i < c) for i in range(8)]) for c in (0, 1, 4, 8)]
    png = tmp_path / "cov.png"
    st = study_from_records(recs, [1, 2, 4, 8, 16], str(png))
    assert list(st["coverage"]) == ["1", "2", "4", "8"]  # k=16 needs 16 samples per task
    assert st["coverage"]["1"] == pytest.approx((0 + 1 / 8 + 4 / 8 + 1) / 4, abs=1e-4)
    assert st["coverage"]["8"] == 0.75
    text = format_study(st)
    assert "k=8" in text and "75.0%" in text and str(png) in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        study_from_records([], [1])
