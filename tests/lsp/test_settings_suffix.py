"""The `suffixRanking` setting (issue 15 #3): parsed, validated, bad values reported and the old value kept."""

from codefill.lsp.settings import SUFFIX_RANKING, Settings, merge


def test_suffix_ranking_defaults_to_invoked_and_parses_each_value():
    assert Settings().suffix_ranking == "invoked"
    for value in SUFFIX_RANKING:
        s, problems = merge(Settings(), {"suffixRanking": value})
        assert s.suffix_ranking == value and not problems
    s, problems = merge(Settings(), {"codefill": {"suffix_ranking": "always"}})  # a section, the snake-case key
    assert s.suffix_ranking == "always" and not problems


def test_a_bad_suffix_ranking_is_reported_and_the_old_value_kept():
    base = merge(Settings(), {"suffixRanking": "always"})[0]
    for bad in ("sometimes", True, None, 1, ["invoked"]):
        s, problems = merge(base, {"suffixRanking": bad})
        assert s.suffix_ranking == "always"
        assert len(problems) == 1 and "suffixRanking" in problems[0] and '"off", "invoked" or "always"' in problems[0]


def test_suffix_ranking_does_not_reload_the_model():
    s = Settings()
    assert merge(s, {"suffixRanking": "off"})[0].model_key() == s.model_key()  # a ranking choice, not a new model
