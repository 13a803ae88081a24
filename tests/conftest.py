import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# Servers that module- or session-scoped fixtures start before the autouse fixture below runs (and any subprocess
# started without an explicit environment) must not record acceptance statistics into the user's state directory.
os.environ["CODEFILL_STATE_DIR"] = tempfile.mkdtemp(prefix="codefill-test-state-")


@pytest.fixture(autouse=True)
def _user_dirs(tmp_path_factory, monkeypatch):
    """Each test gets its own config/cache directories: no test reads or writes the user's."""
    base = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("CODEFILL_CONFIG_DIR", str(base / "config"))
    monkeypatch.setenv("CODEFILL_STATE_DIR", str(base / "state"))
    monkeypatch.setenv("CODEFILL_CACHE_DIR", str(_shared_cache_dir(tmp_path_factory)))
    monkeypatch.delenv("CODEFILL_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(base / "hf"))


_cache = None


def _shared_cache_dir(factory):
    # The AMX probe verdict is cached here; sharing it across tests keeps the probe to one per session.
    global _cache
    if _cache is None:
        _cache = factory.mktemp("cache")
    return _cache


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def engine():
    """The real embedded model, loaded once per test session."""
    from codefill.engine import Engine, EngineConfig

    eng = Engine.load(EngineConfig(n_threads=2))
    yield eng
    eng.close()
