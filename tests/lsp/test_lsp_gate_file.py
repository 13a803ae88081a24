"""Gate files of the wrong shape (issue 12 #3): refused at load with a clear message; the server starts, says so
once, and keeps working."""

import json

import pytest

# ------------------------------------------------------------------ 3. gate files


def test_a_gate_file_of_the_wrong_shape_is_one_message_and_the_server_works(raw, tmp_path):
    bad = tmp_path / "gate.json"
    bad.write_text("[1, 2, 3]")
    res = raw.initialize({"gateFile": str(bad)})
    assert res["result"]["capabilities"]
    shown = [m["params"]["message"] for m in raw.skipped if m.get("method") == "window/showMessage"]
    assert len(shown) == 1 and "gate" in shown[0] and str(bad) in shown[0], shown
    assert raw.request(9, "codefill/noSuchMethod", {})["error"]["code"] == -32601


def _gate_dict():
    from codefill.engine.gate import DEFAULT_PATH

    with open(DEFAULT_PATH, encoding="utf-8") as fh:
        return json.load(fh)


@pytest.mark.parametrize("breakage", ["unknown feature", "not an object", "features not a list", "nan coefficient",
                                      "no intercept", "threshold out of range"])
def test_gate_files_of_the_wrong_shape_are_refused_at_load(tmp_path, breakage):
    from codefill.engine.gate import Gate

    d = _gate_dict()
    if breakage == "unknown feature":
        d["logprob"]["features"][0] = "no_such_feature"
    elif breakage == "not an object":
        d = [d]
    elif breakage == "features not a list":
        d["full"]["features"] = 3
    elif breakage == "nan coefficient":
        d["full"]["coef"][0] = float("nan")
    elif breakage == "no intercept":
        del d["full"]["intercept"]
    else:
        d["threshold"] = 7
    p = tmp_path / "g.json"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError) as exc:
        Gate.load(str(p))
    assert str(p) in str(exc.value)
