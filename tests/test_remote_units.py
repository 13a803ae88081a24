"""The remote backend's parts that need no server: settings precedence, secrecy of the key, the shapes of streamed
events each protocol names tokens in (vLLM's `return_tokens_as_token_ids`, llama-server's `completion_probabilities`),
and what is refused before anything is sent."""

from __future__ import annotations

import math
import socket
import threading

import pytest

from codefill.engine.remote import (LlamaServerProtocol, OpenAIProtocol, ServerClient, ServerError, ServerSettings,
                                    ServerUnreachableError)
from codefill.engine.sampler import Sampler
from codefill.lsp.settings import Settings, merge


def test_flag_beats_environment_beats_config_file(monkeypatch):
    cfg = {"server": "http://cfg:1", "server_model": "cfg-model", "api_key": "cfg-key"}
    monkeypatch.delenv("CODEFILL_SERVER", raising=False)
    monkeypatch.delenv("CODEFILL_API_KEY", raising=False)
    monkeypatch.delenv("CODEFILL_SERVER_MODEL", raising=False)
    assert ServerSettings.resolve(config={}) is None  # nothing configured: nothing leaves the machine
    s = ServerSettings.resolve(config=cfg)
    assert (s.url, s.model, s.api_key) == ("http://cfg:1", "cfg-model", "cfg-key")
    monkeypatch.setenv("CODEFILL_SERVER", "http://env:2")
    monkeypatch.setenv("CODEFILL_API_KEY", "env-key")
    s = ServerSettings.resolve(config=cfg)
    assert (s.url, s.api_key) == ("http://env:2", "env-key")
    s = ServerSettings.resolve("http://flag:3", api_key="flag-key", config=cfg)
    assert (s.url, s.api_key) == ("http://flag:3", "flag-key")


def test_the_key_is_never_in_a_repr_or_a_settings_message():
    s = ServerSettings("http://h:1", api_key="sekrit-1")
    assert "sekrit-1" not in repr(s) and "sekrit-1" not in str(s)
    settings, problems = merge(Settings(), {"apiKey": "sekrit-2", "server": "http://h:1"})
    assert settings.api_key == "sekrit-2" and "sekrit-2" not in repr(settings)
    _, problems = merge(Settings(), {"apiKey": 12345})
    assert problems and "12345" not in problems[0]


def test_a_url_that_is_not_http_is_refused_before_anything_is_sent():
    for url in ("ftp://h/x", "gpu-box:8080", "http://", "file:///etc/passwd"):
        with pytest.raises(ServerError):
            ServerClient(ServerSettings(url))


def test_vllm_token_ids_and_logprobs_are_read_from_the_legacy_logprobs_shape():
    ev = {"choices": [{"index": 0, "text": "return", "finish_reason": None,
                       "logprobs": {"tokens": ["token_id:1230"], "token_logprobs": [-0.25], "top_logprobs": None}}]}
    p = OpenAIProtocol("m")
    assert p.tokens(ev) == [(1230, -0.25, b"return")]
    assert not p.finished(ev)
    assert p.finished({"choices": [{"text": "", "finish_reason": "length", "logprobs": None}]})


def test_llama_server_events_give_ids_logprobs_and_the_text_held_back_as_incomplete_utf8():
    p = LlamaServerProtocol(None)
    ev = {"content": "é", "tokens": [222], "stop": False,
          "completion_probabilities": [{"id": 222, "token": "", "bytes": [169], "logprob": -1.5, "top_logprobs": []}]}
    assert p.tokens(ev) == [(222, -1.5, "é".encode())]


def test_requests_carry_token_ids_and_greedy_is_top_1():
    body = LlamaServerProtocol(None).request([1, 2, 3], Sampler(), 16, True, None, None)
    assert body["prompt"] == [1, 2, 3] and body["top_k"] == 1 and body["temperature"] == 0 and body["cache_prompt"]
    body = OpenAIProtocol("qwen").request([5, 6], Sampler(0.7, 0.9, seed=3), 8, True, {7: -math.inf}, None)
    assert body["prompt"] == [5, 6] and body["model"] == "qwen" and body["seed"] == 3
    assert body["logit_bias"] == {"7": -100.0}


def test_a_port_nobody_listens_on_is_unreachable_after_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ServerClient(ServerSettings(f"http://127.0.0.1:{port}"))
    client.BACKOFF_S = (0.01, 0.01)
    with pytest.raises(ServerUnreachableError) as e:
        client.get("/props")
    assert f"127.0.0.1:{port}" in str(e.value)


def test_a_server_that_hangs_times_out_with_a_clear_error():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    held = []
    threading.Thread(target=lambda: held.append(srv.accept()), daemon=True).start()  # accepts, never answers
    try:
        client = ServerClient(ServerSettings(f"http://127.0.0.1:{srv.getsockname()[1]}", timeout_s=0.5))
        with pytest.raises(ServerUnreachableError) as e:
            client.get("/props")
        assert "did not answer" in str(e.value)
    finally:
        srv.close()
