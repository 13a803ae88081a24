"""A shared inference server as the backend: llama.cpp's llama-server, or any OpenAI-compatible completions server
(vLLM, SGLang, LM Studio, llama-server's own /v1 route).

Everything that makes codefill's answers good stays on this side: the prompt is built here at token level and sent as
token ids (never as text, in which the user's code could be read as special tokens), the stop rules cut as the tokens
stream in, the filters, caches and gate are the engine's. The server only evaluates tokens.

How the backend seam (backend.Backend) maps onto a server:
- `evaluate(tokens)` keeps the prompt; the server evaluates it with the first request (`cache_prompt`: a server slot
  keeps its KV, so typing on at the same place re-evaluates only the new tokens there, as in-process).
- `draw(seq, sampler)` returns the next token the server streamed for that candidate (with its log-probability under
  the model's untempered distribution: `n_probs` / `logprobs`). A step restricted to some tokens (token healing) is one
  non-streamed single-token request with a logit bias that leaves only those tokens; the stream after it starts from
  the prompt plus the tokens so far.
- `feed` only records the tokens (the server appended its own); `rewind` closes every stream, and a closed connection
  is how a superseded or cancelled request stops decoding on the server.
- Several candidates are several concurrent streams, each with its own sampler (greedy first, then seeded samples), so
  a server with several slots (`-np`) decodes them in one batch.

No `score` (backend.py's optional capability behind suffix ranking, Engine.score_suffix): llama-server's
/completion gives probabilities of the tokens it generates only. vLLM can return a prompt's log-probabilities
(`prompt_logprobs`, or `echo` with `logprobs`), which could score candidates as one prompt each, but it is untested
here (no GPU server to try it on) and costs a full request per candidate; so on a server `suffix` selection ranks as
`auto` does, and says so (`suffix_scored: false` in `codefill complete --json`).

Tokenizer: the model's GGUF loaded vocabulary-only when the user has it (`--model`: fast and exact), else the server's
own /tokenize and /detokenize. What is sent is only the prompt window (a few hundred lines around the cursor and the
snippets the prompt holds), never a whole file.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .errors import CodefillError
from .sampler import Draw, Sampler

log = logging.getLogger(__name__)

END = -1  # the token id `draw` returns when the server ended a candidate (is_eog is true for it)
UNKNOWN = -2  # a token a server streamed without naming its id (its text is what the candidate keeps)
LOGIT_BOOST = 100.0  # added to the allowed tokens of a restricted step (logits are within ±40; float32 keeps order)
USER_AGENT = "codefill"


class ServerError(CodefillError):
    """The inference server could not be used (unreachable, refused the key, answered an error)."""


class ServerUnreachableError(ServerError):
    """No connection to the server (down, wrong address, timed out)."""


class ServerAuthError(ServerError):
    """The server refused the API key (401/403)."""


@dataclass(frozen=True)
class ServerSettings:
    """Where the server is and how to talk to it. `api_key` is never printed (repr hides it) nor logged."""

    url: str
    model: str | None = None  # the model name OpenAI-compatible servers route by (`--server-model`)
    api_key: str | None = None
    protocol: str = "auto"  # "llama" (llama-server /completion), "openai" (/v1/completions), "auto"
    timeout_s: float = 30.0  # connect and read timeout per request
    slot: int | None = None  # llama-server `id_slot` for sequence 0 (None: the server picks by prompt similarity)

    def __repr__(self) -> str:
        key = "set" if self.api_key else "none"
        return (f"ServerSettings(url={self.url!r}, model={self.model!r}, api_key=<{key}>, protocol={self.protocol!r},"
                f" timeout_s={self.timeout_s}, slot={self.slot})")

    @classmethod
    def resolve(cls, url: str | None = None, model: str | None = None, api_key: str | None = None,
                config: Mapping[str, Any] | None = None, **kw) -> "ServerSettings | None":
        """Flag > environment (CODEFILL_SERVER, CODEFILL_SERVER_MODEL, CODEFILL_API_KEY) > config file (`server`,
        `server_model`, `api_key`). None when no server is configured anywhere: then nothing leaves the machine."""
        config = config or {}
        url = url or os.environ.get("CODEFILL_SERVER") or config.get("server")
        if not url:
            return None
        model = model or os.environ.get("CODEFILL_SERVER_MODEL") or config.get("server_model")
        api_key = api_key or os.environ.get("CODEFILL_API_KEY") or config.get("api_key")
        return cls(str(url), str(model) if model else None, str(api_key) if api_key else None, **kw)


def _safe(text: str, key: str | None) -> str:
    return text.replace(key, "<api key>") if key else text


class Stream:
    """One streamed response (server-sent events), readable event by event; `close` drops the connection."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse):
        self._conn, self._resp = conn, resp
        self.done = False

    def events(self) -> Iterator[dict]:
        data: list[str] = []
        while True:
            try:
                raw = self._resp.readline()
            except (OSError, http.client.HTTPException) as exc:
                raise ServerUnreachableError(f"the server closed the stream: {exc}") from None
            if not raw:
                self.done = True
                if data:
                    yield from self._parse(data)
                return
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
            elif not line and data:
                yield from self._parse(data)
                data = []
            elif line.startswith("error:"):
                data.append(line[6:].lstrip(" "))

    def _parse(self, data: list[str]) -> Iterator[dict]:
        text = "\n".join(data)
        if text.strip() == "[DONE]":
            self.done = True
            return
        try:
            ev = json.loads(text)
        except ValueError:
            raise ServerError(f"the server sent an event that is not JSON: {text[:80]!r}") from None
        if isinstance(ev, dict) and "error" in ev and not ev.get("choices"):
            err = ev["error"]
            msg = err.get("message") if isinstance(err, dict) else str(err)
            raise ServerError(f"the server failed the request: {msg}")
        if isinstance(ev, dict):
            yield ev

    def close(self) -> None:
        try:
            self._conn.close()  # shuts the socket: the server sees the disconnect and stops decoding
        except Exception:
            pass


class ServerClient:
    """HTTP(S) to one server: JSON requests, streamed completions, bearer auth, timeouts, and retries with backoff for
    requests that are safe to repeat (nothing was received yet: connection refused, 502/503/504)."""

    RETRIES = 2
    BACKOFF_S = (0.2, 0.8)

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        u = urllib.parse.urlsplit(settings.url.strip())
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ServerError(f"server URL must be http(s)://host[:port][/path], not {settings.url!r}")
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        self.base = u.path.rstrip("/")
        self.display = f"{u.scheme}://{u.hostname}{':' + str(u.port) if u.port else ''}{self.base}"
        self._ssl = ssl.create_default_context() if u.scheme == "https" else None  # the system trust store

    def _connect(self) -> http.client.HTTPConnection:
        t = self.settings.timeout_s
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=t, context=self._ssl)
        return http.client.HTTPConnection(self.host, self.port, timeout=t)

    def _headers(self, body: bool) -> dict[str, str]:
        h = {"User-Agent": USER_AGENT, "Accept": "application/json, text/event-stream"}
        if body:
            h["Content-Type"] = "application/json"
        if self.settings.api_key:
            h["Authorization"] = f"Bearer {self.settings.api_key}"
        return h

    def _url(self, path: str) -> str:
        """`path` under the base URL; "^/x": at the server's root when the base is an OpenAI `…/v1` (vLLM serves
        /tokenize there)."""
        if path.startswith("^"):
            base = self.base[:-3] if self.base.endswith("/v1") else self.base
            return base + path[1:]
        return self.base + path

    def _open(self, method: str, path: str, body: Any | None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        payload = None if body is None else json.dumps(body).encode("utf-8")
        last: Exception | None = None
        for attempt in range(self.RETRIES + 1):
            conn = self._connect()
            try:
                conn.request(method, self._url(path), body=payload, headers=self._headers(payload is not None))
                resp = conn.getresponse()
            except (ConnectionRefusedError, ConnectionResetError, socket.gaierror, http.client.RemoteDisconnected) as exc:
                conn.close()
                last = exc
            except (socket.timeout, TimeoutError):
                conn.close()
                raise ServerUnreachableError(
                    f"the server at {self.display} did not answer within {self.settings.timeout_s:g} s") from None
            except OSError as exc:
                conn.close()
                last = exc
            else:
                if resp.status in (502, 503, 504) and attempt < self.RETRIES:
                    resp.read()
                    conn.close()
                    last = ServerError(f"HTTP {resp.status}")
                else:
                    if resp.status >= 400:
                        detail = resp.read(4096).decode("utf-8", errors="replace")
                        conn.close()
                        raise self._http_error(resp.status, path, detail)
                    return conn, resp
            if attempt < self.RETRIES:
                time.sleep(self.BACKOFF_S[min(attempt, len(self.BACKOFF_S) - 1)])
        if isinstance(last, ServerError):
            raise ServerError(f"the server at {self.display} is not ready ({last})")
        reason = getattr(last, "strerror", None) or str(last)
        raise ServerUnreachableError(f"cannot reach the server at {self.display}: {reason}")

    def _http_error(self, status: int, path: str, detail: str) -> ServerError:
        try:
            err = json.loads(detail).get("error", detail)
            msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
        except (ValueError, AttributeError):
            msg = detail.strip()
        msg = _safe(" ".join(msg.split())[:200], self.settings.api_key)
        if status in (401, 403):
            how = "is wrong" if self.settings.api_key else "is needed (--api-key, CODEFILL_API_KEY or api_key in the config)"
            return ServerAuthError(f"the server at {self.display} refused the request ({status}): the API key {how}")
        if status == 404:
            return ServerError(f"the server at {self.display} has no {path} ({msg or 'not found'}): is this the right"
                               " URL and protocol (llama-server: http://host:port; OpenAI-compatible: …/v1)?")
        return ServerError(f"the server at {self.display} answered {status} to {path}: {msg}")

    def get(self, path: str) -> Any:
        return self._json("GET", path, None)

    def post(self, path: str, body: Any) -> Any:
        return self._json("POST", path, body)

    def _json(self, method: str, path: str, body: Any | None) -> Any:
        conn, resp = self._open(method, path, body)
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ServerUnreachableError(f"the server at {self.display} dropped the connection: {exc}") from None
        finally:
            conn.close()
        try:
            return json.loads(data)
        except ValueError:
            raise ServerError(f"the server at {self.display} answered {path} with something that is not JSON") from None

    def stream(self, path: str, body: Any) -> Stream:
        conn, resp = self._open("POST", path, body)
        return Stream(conn, resp)


# ---------------------------------------------------------------------------------------------------- protocols
class _Protocol:
    """One completions API: the request for a token-id prompt and the tokens an event carries."""

    name = ""
    path = ""

    def __init__(self, server_model: str | None):
        self.model = server_model

    def sampling(self, sampler: Sampler) -> dict:
        raise NotImplementedError

    def request(self, prompt: Sequence[int], sampler: Sampler, n_predict: int, stream: bool,
                bias: Mapping[int, float] | None, slot: int | None) -> dict:
        raise NotImplementedError

    def tokens(self, ev: dict) -> list[tuple[int | None, float, bytes]]:
        """(token id or None when the server does not say, its log-probability, its text) for each token in `ev`."""
        raise NotImplementedError

    def finished(self, ev: dict) -> bool:
        raise NotImplementedError


class LlamaServerProtocol(_Protocol):
    name = "llama-server"
    path = "/completion"

    def request(self, prompt, sampler, n_predict, stream, bias, slot):
        body: dict[str, Any] = {
            "prompt": list(prompt), "n_predict": n_predict, "stream": stream, "cache_prompt": True, "n_probs": 1,
            "return_tokens": True, "samplers": ["top_k", "top_p", "temperature"], "seed": sampler.seed,
        }
        if sampler.greedy:
            body.update(temperature=0.0, top_k=1, top_p=1.0)
        else:
            body.update(temperature=sampler.temperature, top_p=sampler.top_p, top_k=0)
        if bias:
            body["logit_bias"] = [[t, b if b != -math.inf else False] for t, b in bias.items()]
        if slot is not None:
            body["id_slot"] = slot
        return body

    def tokens(self, ev):
        probs = ev.get("completion_probabilities") or []
        text = (ev.get("content") or "").encode("utf-8")
        toks = ev.get("tokens") or []
        if probs:
            out = []
            for i, p in enumerate(probs):
                tid = p.get("id")
                piece = bytes(p["bytes"]) if isinstance(p.get("bytes"), list) else (p.get("token") or "").encode()
                out.append((int(tid) if tid is not None else None, float(p.get("logprob", math.nan)), piece))
            if len(out) == 1:  # the text of tokens held back as incomplete UTF-8 comes with the next event's text
                out[0] = (out[0][0], out[0][1], text)
            return out
        if toks:
            return [(int(toks[-1]), math.nan, text)]
        return [(None, math.nan, text)] if text else []

    def finished(self, ev):
        return bool(ev.get("stop"))


class OpenAIProtocol(_Protocol):
    """OpenAI /v1/completions with a token-id prompt. Token ids come from llama-server's `logprobs.content[].id` or from
    vLLM's `return_tokens_as_token_ids` ("token_id:N")."""

    name = "openai"
    path = "/completions"

    def request(self, prompt, sampler, n_predict, stream, bias, slot):
        body: dict[str, Any] = {
            "prompt": list(prompt), "max_tokens": n_predict, "stream": stream, "logprobs": 1, "seed": sampler.seed,
            "echo": False, "return_tokens_as_token_ids": True,  # vLLM: token ids in the logprobs
            "cache_prompt": True,  # llama-server's /v1 route; other servers ignore unknown fields
        }
        if self.model:
            body["model"] = self.model
        if sampler.greedy:
            body.update(temperature=0.0, top_p=1.0)
        else:
            body.update(temperature=sampler.temperature, top_p=sampler.top_p)
        if bias:
            body["logit_bias"] = {str(t): (b if b != -math.inf else -100.0) for t, b in bias.items()}
        return body

    def tokens(self, ev):
        choices = ev.get("choices") or []
        if not choices:
            return []
        ch = choices[0]
        text = (ch.get("text") or "").encode("utf-8")
        lp = ch.get("logprobs") or {}
        if isinstance(lp, dict) and isinstance(lp.get("content"), list) and lp["content"]:  # llama-server
            out = [(int(c["id"]) if c.get("id") is not None else None, float(c.get("logprob", math.nan)),
                    bytes(c["bytes"]) if isinstance(c.get("bytes"), list) else (c.get("token") or "").encode())
                   for c in lp["content"]]
            if len(out) == 1:
                out[0] = (out[0][0], out[0][1], text)
            return out
        if isinstance(lp, dict) and isinstance(lp.get("tokens"), list) and lp["tokens"]:  # vLLM / legacy OpenAI
            lps = lp.get("token_logprobs") or []
            out = []
            for i, tok in enumerate(lp["tokens"]):
                m = re.fullmatch(r"token_id:(\d+)", str(tok))
                val = lps[i] if i < len(lps) and lps[i] is not None else math.nan
                out.append((int(m.group(1)) if m else None, float(val), b""))
            if out:  # the choice's text is what these tokens produced together
                out[-1] = (out[-1][0], out[-1][1], text)
            return out
        return [(None, math.nan, text)] if text else []

    def finished(self, ev):
        choices = ev.get("choices") or []
        return bool(choices and choices[0].get("finish_reason"))


# ---------------------------------------------------------------------------------------------------- vocabulary
class ServerVocab:
    """The server's own tokenizer, for when the user has no GGUF of the served model (vocab.Vocab over /tokenize and
    /detokenize). Its token pieces cannot be enumerated cheaply (`enumerable` is False): token healing and the
    leading-whitespace restriction, which need every piece, are off; give `--model` the model's GGUF for them."""

    enumerable = False

    def __init__(self, client: ServerClient, protocol: _Protocol, info: dict):
        self._client = client
        self._openai = isinstance(protocol, OpenAIProtocol)
        self._model = protocol.model
        self._piece: dict[int, bytes] = {}
        self._special: dict[str, int | None] = {}
        self.n_vocab = int(info.get("n_vocab") or 0)
        self._meta = {"general.name": str(info.get("model") or "")}
        self._bos = info.get("bos")
        self._eos = info.get("eos")
        self._guard: list[str] = []  # texts of special tokens found: user text is split so it cannot form them

    def _tok_raw(self, text: str, special: bool) -> list[int]:
        # One body for both: llama-server reads content/add_special/parse_special/with_pieces, vLLM
        # prompt/add_special_tokens (and has no parse_special: see `tokenize`).
        body: dict[str, Any] = {"content": text, "prompt": text, "add_special": False, "add_special_tokens": False,
                                "parse_special": special, "with_pieces": True}
        if self._openai and self._model:
            body["model"] = self._model
        r = self._client.post("^/tokenize" if self._openai else "/tokenize", body)
        out = []
        for t in r.get("tokens", []):
            if isinstance(t, dict):
                tid = int(t["id"])
                p = t.get("piece")
                self._piece.setdefault(tid, bytes(p) if isinstance(p, list) else str(p).encode("utf-8"))
                out.append(tid)
            else:
                out.append(int(t))
        return out

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = False) -> list[int]:
        if not text:
            return []
        if parse_special or not self._openai or not self._guard:
            return self._tok_raw(text, parse_special)
        # OpenAI-compatible /tokenize has no parse_special switch: cut the text before every known special token's
        # text, so no piece can match one (the pieces are tokenized apart).
        pattern = "|".join(re.escape(g) for g in self._guard)
        parts, last = [], 0
        for m in re.finditer(pattern, text):
            parts.append(text[last : m.start() + 1])
            last = m.start() + 1
        parts.append(text[last:])
        out: list[int] = []
        for p in parts:
            if p:
                out += self._tok_raw(p, False)
        return out

    def token_piece(self, token: int, special: bool = False) -> bytes:
        if token == END:
            return b""
        p = self._piece.get(token)
        if p is None:
            p = self.detokenize([token], special=True).encode("utf-8")
            self._piece[token] = p
        if not special and token in self._special.values():
            return b""
        return p

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str:
        tokens = [t for t in tokens if t != END]
        if not tokens:
            return ""
        body: dict[str, Any] = {"tokens": list(tokens)}
        if self._openai and self._model:
            body["model"] = self._model
        r = self._client.post("^/detokenize" if self._openai else "/detokenize", body)
        return str(r.get("content", r.get("prompt", "")))  # llama-server: content; vLLM: prompt

    def token_text(self, token: int) -> str:
        return self.token_piece(token, special=True).decode("utf-8", errors="replace")

    def special_token(self, text: str) -> int | None:
        if text in self._special:
            return self._special[text]
        tid = None
        try:
            ids = self._tok_raw(text, True)
            if len(ids) == 1 and self.detokenize(ids, special=True) == text:
                tid = ids[0]
        except ServerError:
            raise
        self._special[text] = tid
        if tid is not None and text not in self._guard:
            self._guard.append(text)
        return tid

    def fim_ids(self) -> dict[str, int]:
        return {}

    def metadata(self) -> dict[str, str]:
        return dict(self._meta)

    @property
    def bos(self) -> int | None:
        return self._bos

    @property
    def eos(self) -> int | None:
        return self._eos

    @property
    def add_bos(self) -> bool:
        return False

    def is_eog(self, token: int) -> bool:
        return token == END or (self._eos is not None and token == self._eos)

    def describe(self) -> str:
        return self._meta["general.name"]

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------------- the backend
@dataclass
class _Seq:
    tokens: list[int]  # after the prompt
    stream: Stream | None = None
    events: Iterator[dict] | None = None
    pending: list[tuple[int | None, float, bytes]] | None = None
    finished: bool = False  # the server sent its last event
    ended: bool = False  # and `draw` has returned END


@dataclass(frozen=True)
class ServerInfo:
    protocol: str
    model: str
    n_ctx: int
    n_slots: int | None
    raw: dict


def probe(client: ServerClient, protocol: str = "auto", server_model: str | None = None) -> tuple[_Protocol, ServerInfo]:
    """Which API the server speaks, what model it serves and its context size."""
    base = client.base
    want = protocol
    if want == "auto":
        want = "openai" if base.endswith("/v1") else "llama"
    if want == "llama":
        try:
            props = client.get("/props")
        except ServerAuthError:
            raise
        except ServerError:
            if protocol == "llama":
                raise
            props = None
        if isinstance(props, dict):
            try:  # llama-server's /v1/models carries the vocabulary size and training context
                meta = ((client.get("/v1/models").get("data") or [{}])[0].get("meta") or {})
                props = {**props, "n_vocab": meta.get("n_vocab"), "n_ctx_train": meta.get("n_ctx_train")}
            except (ServerError, AttributeError, IndexError, TypeError):
                pass
            gen = props.get("default_generation_settings") or {}
            n_ctx = int(gen.get("n_ctx") or props.get("n_ctx") or 0)
            path = str(props.get("model_alias") or props.get("model_path") or "llama-server")
            return LlamaServerProtocol(server_model), ServerInfo(
                "llama-server", server_model or os.path.basename(path), n_ctx or 4096,
                props.get("total_slots"), props)
        client.base = base + "/v1"  # not llama-server's native API: try the OpenAI one at /v1
    try:
        models = client.get("/models")
    except ServerError:
        client.base = base
        raise
    data = models.get("data") if isinstance(models, dict) else None
    entries = [m for m in (data or []) if isinstance(m, dict)]
    if server_model is None and entries:
        server_model = str(entries[0].get("id"))
    entry = next((m for m in entries if m.get("id") == server_model), entries[0] if entries else {})
    n_ctx = int(entry.get("max_model_len") or (entry.get("meta") or {}).get("n_ctx_train") or 0)
    if server_model is None:
        raise ServerError(f"the server at {client.display} lists no model; name one with --server-model")
    return OpenAIProtocol(server_model), ServerInfo("openai", server_model, n_ctx or 4096, None, models)


class RemoteBackend:
    """backend.Backend over an inference server. One request at a time (the engine's lock), `n_seq` streams."""

    accelerated = True  # a server's GPU: prompts and parallel candidates are cheap
    n_threads = 0

    def __init__(self, settings: ServerSettings, vocab=None, n_seq: int = 4, n_ctx: int | None = None):
        self.settings = settings
        self.client = ServerClient(settings)
        self.proto, self.info = probe(self.client, settings.protocol, settings.model)
        self.n_ctx = min(n_ctx, self.info.n_ctx) if n_ctx else self.info.n_ctx
        self.n_seq = max(1, n_seq)
        if vocab is None:
            vocab = ServerVocab(self.client, self.proto, {"model": self.info.model, **self._vocab_info()})
        self.vocab = vocab
        self.n_vocab = getattr(vocab, "n_vocab", 0)
        self.path = f"{self.info.model} @ {self.client.display}"
        self.server_model = self.info.model
        self.enumerable = getattr(vocab, "enumerable", True)
        self._prompt: tuple[int, ...] = ()
        self._seqs: dict[int, _Seq] = {}
        self._max_tokens = 4096
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "streams_closed": 0}

    def _vocab_info(self) -> dict:
        raw = self.info.raw if isinstance(self.info.raw, dict) else {}
        return {"n_vocab": raw.get("n_vocab") or 0}

    # ---------------------------------------------------------------- vocabulary: the local GGUF or the server's
    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = False) -> list[int]:
        return self.vocab.tokenize(text, add_special=add_special, parse_special=parse_special)

    def token_piece(self, token: int, special: bool = False) -> bytes:
        return b"" if token == END else self.vocab.token_piece(token, special)

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str:
        return self.vocab.detokenize([t for t in tokens if t != END], special)

    def token_text(self, token: int) -> str:
        return self.vocab.token_text(token)

    def special_token(self, text: str) -> int | None:
        return self.vocab.special_token(text)

    def fim_ids(self) -> dict[str, int]:
        return self.vocab.fim_ids()

    def metadata(self) -> dict[str, str]:
        return self.vocab.metadata()

    @property
    def bos(self) -> int | None:
        return self.vocab.bos

    @property
    def eos(self) -> int | None:
        return self.vocab.eos

    @property
    def add_bos(self) -> bool:
        return self.vocab.add_bos

    def is_eog(self, token: int) -> bool:
        return token == END or self.vocab.is_eog(token)

    def describe(self) -> str:
        return f"{self.info.model} on {self.info.protocol} at {self.client.display}"

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, tokens: Sequence[int]) -> tuple[int, int]:
        """Keep the prompt; the server evaluates it with the first draw. Returns (tokens the server's cache shares
        with the last prompt sent, the rest): what it will re-use if the same slot serves this request."""
        if not tokens:
            raise ValueError("empty prompt")
        if len(tokens) >= self.n_ctx:
            raise ValueError(f"prompt of {len(tokens)} tokens does not fit the server's context ({self.n_ctx})")
        prev, self._prompt = self._prompt, tuple(tokens)
        n = 0
        for a, b in zip(prev, tokens):
            if a != b:
                break
            n += 1
        self.rewind()
        return n, len(tokens) - n

    def fork(self, n: int, max_tokens: int | None = None) -> None:
        if n > self.n_seq:
            raise ValueError(f"{n} sequences requested, the server backend runs {self.n_seq}")
        self.rewind()
        if max_tokens is not None:
            self._max_tokens = max(1, max_tokens)
        self._seqs = {i: _Seq([]) for i in range(n)}

    def _bias(self, allowed: np.ndarray) -> dict[int, float]:
        """A logit bias that leaves only `allowed`: a boost for them, or (when they are most of the vocabulary) -inf
        for the others: whichever is shorter to send."""
        if self.n_vocab and len(allowed) > self.n_vocab // 2:
            mask = np.ones(self.n_vocab, dtype=bool)
            mask[allowed] = False
            return {int(t): -math.inf for t in np.flatnonzero(mask)}
        return {int(t): LOGIT_BOOST for t in allowed}

    def _slot(self, seq: int) -> int | None:
        return self.settings.slot + seq if self.settings.slot is not None and seq == 0 else None

    def draw(self, seq: int, sampler: Sampler, allowed: np.ndarray | None = None) -> Draw:
        s = self._seqs[seq]
        if s.ended:
            return Draw(END, 0.0, math.nan)
        remaining = self._max_tokens - len(s.tokens)
        if allowed is not None:  # a restricted step: one token, not streamed
            self._close(s)
            if len(allowed) == 0:
                return Draw(END, 0.0, math.nan)
            body = self.proto.request(self._prompt + tuple(s.tokens), sampler, 1, False, self._bias(allowed),
                                      self._slot(seq))
            self.stats["requests"] += 1
            toks = self.proto.tokens(self.client.post(self.proto.path, body))
            toks = [t for t in toks if t[0] is not None]
            if not toks:
                return Draw(END, 0.0, math.nan)
            tid, lp, piece = toks[0]
            return Draw(tid, lp, math.nan, piece or self.vocab.token_piece(tid))
        while True:
            if s.pending:
                tid, lp, piece = s.pending.pop(0)
                return Draw(tid if tid is not None else UNKNOWN, lp, math.nan, piece)
            if s.finished:  # the server ended the candidate and every token it sent has been drawn
                s.ended = True
                self._close(s)
                return Draw(END, 0.0, math.nan)
            if s.events is None:
                body = self.proto.request(self._prompt + tuple(s.tokens), sampler, max(1, remaining), True, None,
                                          self._slot(seq))
                self.stats["requests"] += 1
                s.stream = self.client.stream(self.proto.path, body)
                s.events = s.stream.events()
            ev = next(s.events, None)
            if ev is None:  # the connection ended before the server's last event: it went away mid-answer
                self._close(s)
                raise ServerUnreachableError(f"the server at {self.client.display} closed the connection mid-answer")
            s.pending = self.proto.tokens(ev)
            if self.proto.finished(ev):
                s.finished = True
                if isinstance(ev.get("timings"), dict):
                    self.stats["timings"] = ev["timings"]

    def feed(self, tokens: Mapping[int, int]) -> None:
        for seq, tok in tokens.items():
            self._seqs[seq].tokens.append(tok)

    def _close(self, s: _Seq) -> None:
        if s.stream is not None:
            s.stream.close()
            self.stats["streams_closed"] += 1
        s.stream, s.events = None, None

    def rewind(self) -> None:
        """Close every stream: the server stops decoding candidates nobody reads any more."""
        for s in self._seqs.values():
            self._close(s)
        self._seqs = {}

    def clear(self) -> None:
        self._prompt = ()

    def close(self) -> None:
        self.rewind()
        close = getattr(self.vocab, "close", None)
        if close is not None and self.vocab is not self:
            close()


PROBE_TEXT = "def probe(x):\n    return {'a': [1, 2.5], \"b\": x}  # ünï ✓\n"


def check_vocab(backend: RemoteBackend) -> None:
    """The local GGUF's tokenizer must be the served model's: compare one text's tokens with the server's /tokenize
    (skipped where the server has none)."""
    local = backend.vocab.tokenize(PROBE_TEXT)
    try:
        remote = ServerVocab(backend.client, backend.proto, {})
        theirs = remote._tok_raw(PROBE_TEXT, False)
    except ServerAuthError:
        raise
    except ServerError:
        log.info("the server has no /tokenize: the local vocabulary is not checked against it")
        return
    if theirs != local:
        raise ServerError(f"the model file given (--model) does not tokenize like the server's model "
                          f"{backend.info.model!r}: give the GGUF of the model the server runs, or none")
