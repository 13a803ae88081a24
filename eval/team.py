"""A team on one inference server: N people typing real files at a human cadence (`codefill bench team`).

Every person types `n_lines` lines of a real file, each line cleared back to its indentation first (a new position),
then typed one character every 1/cps seconds. Every keystroke is a request; the person's previous request, if still
running, is superseded at that moment (an editor drops a suggestion nobody can see any more), so it is not an answer
shown. Latency is keystroke → answer, over the answers shown.

The same keystrokes drive two columns, one after the other, against the same server:

- codefill: each person has an engine of its own (`Engine.connect`: its own caches and typed-through state) used from
  its own threads; a superseded request gets its cancel event set (the engine closes its stream).
- raw: what llama.vim does (autoload/llama.vim `llama#fim`): every keystroke a non-streamed POST /infill with
  `cache_prompt: true`, `input_prefix` = the 256 lines before the cursor's, `prompt` = the cursor's line up to the
  cursor, `input_suffix` = the rest of that line and the 64 lines after; a superseded request's connection is shut
  (llama-server notices within its 1 s polling and stops the task). A model without FIM tokens makes /infill answer
  an error: then the raw column sends POST /completion with the same text window as a prefix-only `prompt`
  (`route` says which).

Server work is read from llama-server's own counters where it has them (`--metrics`: `prompt_tokens_total`, the
prompt tokens it evaluated, cache hits excluded, superseded requests included), as a difference over each column.
Without them the figures are the client's: codefill's `Timings.prompt_evaluated` (what the engine expects the server
to evaluate) and the raw answers' `timings.prompt_n` (superseded raw requests' work unknown): marked "estimate".

Before each column the server's slots are erased (POST /slots/N?action=erase: llama-server allows it when started
with `--slot-save-path DIR`) so that no column starts from the KV cache an earlier one left (person p types the same
lines in every row); llama-server's host-memory prompt cache (`--cache-ram`) is not reachable that way: run the
server with `--cache-ram 0` for a fair comparison.

Same scripts for every N: person p types the same lines whatever N is, so the rows differ only by the load.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Sequence

from codefill.engine.types import CompletionRequest, StopReason

from .metrics import percentile

# llama.vim's window and request (autoload/llama.vim, default config; n_predict and t_max_predict_ms as the issue).
LLAMA_VIM_PREFIX_LINES = 256
LLAMA_VIM_SUFFIX_LINES = 64
RAW_N_PREDICT = 64
RAW_T_MAX_PREDICT_MS = 1000
MIN_LINE_LENGTH = 8  # lines worth typing (as benchmark.typing_session)
FINAL_WAIT_S = 120.0  # after a person's last keystroke: how long its last request may still take
HTTP_TIMEOUT_S = 120.0  # raw requests: curl (llama.vim) has no time limit; a loaded CPU server is slow

Progress = Callable[[int, int, str], None]  # (keystrokes done, keystrokes in all, what runs now)


# ---------------------------------------------------------------------------------------------------- scripts
def candidate_lines(text: str, min_length: int = MIN_LINE_LENGTH) -> list[int]:
    """The lines a person may type: long enough, not comments (benchmark.typing_session's rule)."""
    rows = text.split("\n")
    return [i for i, ln in enumerate(rows) if len(ln.strip()) >= min_length and not ln.lstrip().startswith("#")]


@dataclass(frozen=True)
class Keystroke:
    line: int  # 0-based line being typed
    typed: int  # characters of its body typed (0: the line was just cleared to its indentation, a new position)

    @property
    def new(self) -> bool:
        return self.typed == 0


@dataclass
class Script:
    """One person's typing: a file, the lines, and every keystroke's document state (built when asked for)."""

    person: int
    path: str
    text: str
    lines: list[int]
    keystrokes: list[Keystroke] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rows = self.text.split("\n")
        if not self.keystrokes:
            for i in self.lines:
                body = self._rows[i].lstrip()
                self.keystrokes += [Keystroke(i, k) for k in range(len(body) + 1)]

    @property
    def document_id(self) -> str:
        return f"{self.path}#person{self.person}"

    def state(self, ks: Keystroke) -> tuple[list[str], int, int]:
        """(the document's lines, cursor line, cursor character) at this keystroke: the file with the line being
        typed cut to what was typed so far (the rest of the file as it is, like typing_session)."""
        row = self._rows[ks.line]
        indent = row[: len(row) - len(row.lstrip())]
        body = row[len(indent) :]
        rows = list(self._rows)
        rows[ks.line] = indent + body[: ks.typed]
        return rows, ks.line, len(indent) + ks.typed

    def request(self, ks: Keystroke) -> CompletionRequest:
        rows, line, char = self.state(ks)
        return CompletionRequest(text="\n".join(rows), line=line, character=char, path=self.path,
                                 document_id=self.document_id)


def make_scripts(files: Sequence[tuple[str, str]], n_people: int, n_lines: int, seed: int = 0) -> list[Script]:
    """Person p types file p mod len(files); the people sharing a file get disjoint lines of it (a seeded shuffle of
    its candidate lines, cut in runs of `n_lines`; reused round the file only when it has too few)."""
    if not files:
        raise ValueError("no files to type")
    pools: list[list[int]] = []
    for fi, (path, text) in enumerate(files):
        pool = candidate_lines(text)
        if not pool:
            raise ValueError(f"{path}: no line of {MIN_LINE_LENGTH}+ characters to type")
        random.Random(f"{seed}:{fi}").shuffle(pool)
        pools.append(pool)
    scripts = []
    for p in range(n_people):
        fi = p % len(files)
        j = p // len(files)  # the j-th person on this file
        pool = pools[fi]
        lines = [pool[(j * n_lines + k) % len(pool)] for k in range(n_lines)]
        scripts.append(Script(p, files[fi][0], files[fi][1], lines))
    return scripts


def llama_vim_window(rows: list[str], line: int, character: int) -> tuple[str, str, str, int]:
    """(input_prefix, prompt, input_suffix, n_indent) as llama.vim's `llama#fim` builds them."""
    cur = rows[line]
    cur_prefix, cur_suffix = cur[:character], cur[character:]
    if not cur.strip():  # a line of whitespace only: llama.vim starts from its beginning
        indent, cur_prefix, cur_suffix = 0, "", ""
    else:
        indent = len(cur_prefix) - len(cur_prefix.lstrip())
    before = rows[max(0, line - LLAMA_VIM_PREFIX_LINES) : line]
    after = rows[line + 1 : line + 1 + LLAMA_VIM_SUFFIX_LINES]
    return "\n".join(before) + "\n", cur_prefix, cur_suffix + "\n" + "\n".join(after) + "\n", indent


# ---------------------------------------------------------------------------------------------------- HTTP
def display_url(url: str) -> str:
    """The URL without any user:password part (printable)."""
    u = urllib.parse.urlsplit(url.strip())
    return f"{u.scheme}://{u.hostname}{':' + str(u.port) if u.port else ''}{u.path.rstrip('/')}" if u.hostname else url


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class Http:
    """Plain HTTP(S) to the server's root (an OpenAI-style `…/v1` base is cut back to it), bearer key if any."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = HTTP_TIMEOUT_S):
        u = urllib.parse.urlsplit(url.strip())
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"server URL must be http(s)://host[:port][/path], not {url!r}")
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        base = u.path.rstrip("/")
        self.base = base[:-3] if base.endswith("/v1") else base
        self.api_key = api_key
        self.timeout_s = timeout_s
        self._ssl = ssl.create_default_context() if u.scheme == "https" else None

    def connection(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s, context=self._ssl)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "codefill-bench"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def path(self, p: str) -> str:
        return self.base + p

    def call(self, method: str, p: str, body: dict | None = None) -> tuple[int, bytes]:
        conn = self.connection()
        try:
            conn.request(method, self.path(p), body=None if body is None else json.dumps(body).encode(),
                         headers=self.headers())
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def json(self, method: str, p: str, body: dict | None = None) -> dict:
        status, data = self.call(method, p, body)
        if status >= 400:
            raise HttpError(status, error_message(data, self.api_key))
        return json.loads(data)


def error_message(data: bytes, api_key: str | None = None) -> str:
    text = data.decode("utf-8", errors="replace")
    try:
        err = json.loads(text).get("error", text)
        text = err.get("message", str(err)) if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        pass
    text = " ".join(text.split())[:200]
    return text.replace(api_key, "<api key>") if api_key else text


def read_metrics(h: Http) -> dict[str, float] | None:
    """llama-server's Prometheus counters (`--metrics`), None where the server has none."""
    try:
        status, data = h.call("GET", "/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    out = {}
    for ln in data.decode("utf-8", errors="replace").splitlines():
        m = re.match(r"^llamacpp:([a-z_]+)\s+([0-9.eE+-]+)$", ln.strip())
        if m:
            out[m.group(1)] = float(m.group(2))
    return out if "prompt_tokens_total" in out else None


def server_slots(h: Http) -> list[dict] | None:
    try:
        slots = h.json("GET", "/slots")
    except (OSError, HttpError, ValueError):
        return None
    return slots if isinstance(slots, list) else None


def erase_slots(h: Http) -> bool:
    """Drop every slot's KV cache (llama-server: POST /slots/N?action=erase). False where not allowed."""
    slots = server_slots(h)
    if not slots:
        return False
    ok = True
    for s in slots:
        try:
            h.json("POST", f"/slots/{int(s.get('id', 0))}?action=erase", {})
        except (OSError, HttpError, ValueError):
            ok = False
    return ok


def wait_idle(h: Http, timeout_s: float = 15.0) -> None:
    """Until no slot is processing (a superseded non-streamed task stops within llama-server's 1 s polling)."""
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        slots = server_slots(h)
        if slots is None:
            time.sleep(1.5)
            return
        if not any(s.get("is_processing") for s in slots):
            return
        time.sleep(0.2)


def raw_body(route: str, rows: list[str], line: int, character: int, seed: int) -> dict:
    prefix, middle, suffix, indent = llama_vim_window(rows, line, character)
    common = {"n_predict": RAW_N_PREDICT, "cache_prompt": True, "t_max_predict_ms": RAW_T_MAX_PREDICT_MS,
              "stream": False, "top_k": 40, "top_p": 0.99, "seed": seed}
    if route == "infill":
        return {"input_prefix": prefix, "input_suffix": suffix, "input_extra": [], "prompt": middle,
                "n_indent": indent, "samplers": ["top_k", "top_p", "infill"], **common}
    return {"prompt": prefix + middle, "samplers": ["top_k", "top_p"], **common}


def probe_raw_route(h: Http) -> tuple[str | None, str]:
    """("infill" | "completion" | None, why): one tiny /infill request; if refused, one /completion request."""
    small = (["def add(a, b):", "    return a + b", ""], 1, 4)
    try:
        status, data = h.call("POST", "/infill", {**raw_body("infill", *small, 0), "n_predict": 1})
    except OSError as exc:
        return None, f"cannot reach the server: {exc}"
    if status in (401, 403):
        raise HttpError(status, "the server refused the API key")
    if status == 200:
        return "infill", "POST /infill (llama.vim's request)"
    why = error_message(data, h.api_key)
    try:
        status2, data2 = h.call("POST", "/completion", {**raw_body("completion", *small, 0), "n_predict": 1})
    except OSError as exc:
        return None, f"/infill answered {status} ({why}); /completion unreachable: {exc}"
    if status2 == 200:
        return "completion", (f"POST /completion, prefix-only prompt of llama.vim's window: /infill answered {status}"
                              f" ({why})")
    return None, f"/infill answered {status} ({why}), /completion {status2} ({error_message(data2, h.api_key)})"


# ---------------------------------------------------------------------------------------------------- results
@dataclass
class PersonResult:
    person: int
    path: str
    keystrokes: int = 0
    requests: int = 0  # HTTP completion requests that reached the server
    shown: int = 0  # answers that arrived before the next keystroke (or after the last one)
    superseded: int = 0
    local: int = 0  # answers shown without a server call (codefill: typed-through or completion cache)
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    prompt_tokens: int = 0  # client-side: codefill's expected evaluation, raw: answers' timings.prompt_n
    reported_prompt_n: int = 0  # codefill: the server's timings.prompt_n where a stream ran to its last event
    reported: int = 0
    seconds: float = 0.0  # typing time (keystrokes / cps)
    first_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def error(self, msg: str) -> None:
        with self.lock:
            self.errors += 1
            self.first_error = self.first_error or msg[:200]

    def summary(self) -> dict:
        return {
            "person": self.person, "path": self.path, "keystrokes": self.keystrokes, "requests": self.requests,
            "shown": self.shown, "superseded": self.superseded, "local_answers": self.local, "errors": self.errors,
            "p50_ms": round(percentile(self.latencies_ms, 50), 1) if self.latencies_ms else None,
            "p95_ms": round(percentile(self.latencies_ms, 95), 1) if self.latencies_ms else None,
            "prompt_tokens_client": self.prompt_tokens,
            "server_timings_reports": self.reported,  # codefill: streams that ran to the server's last event
            "server_timings_prompt_n": self.reported_prompt_n,
            "first_error": self.first_error or None,
        }


@dataclass
class ColumnResult:
    name: str  # "codefill" | "raw"
    people: list[PersonResult]
    route: str = ""
    server_prompt_tokens: int | None = None  # /metrics difference over the column
    server_cached_tokens: int | None = None
    server_predicted_tokens: int | None = None
    wall_s: float = 0.0
    skipped: str = ""

    def summary(self) -> dict:
        if self.skipped:
            return {"skipped": self.skipped}
        lat = [x for p in self.people for x in p.latencies_ms]
        p95s = [percentile(p.latencies_ms, 95) for p in self.people if p.latencies_ms]
        minutes = sum(p.seconds for p in self.people) / 60.0
        client = sum(p.prompt_tokens for p in self.people)
        measured = self.server_prompt_tokens is not None
        tokens = self.server_prompt_tokens if measured else client
        return {
            "route": self.route,
            "keystrokes": sum(p.keystrokes for p in self.people),
            "requests": sum(p.requests for p in self.people),
            "shown": sum(p.shown for p in self.people),
            "superseded": sum(p.superseded for p in self.people),
            "local_answers": sum(p.local for p in self.people),
            "errors": sum(p.errors for p in self.people),
            "p50_ms": round(percentile(lat, 50), 1) if lat else None,
            "p95_ms": round(percentile(lat, 95), 1) if lat else None,
            "worst_person_p95_ms": round(max(p95s), 1) if p95s else None,
            "prompt_tokens": tokens,
            "prompt_tokens_source": "server /metrics" if measured else "client estimate",
            "prompt_tokens_per_person_minute": round(tokens / minutes, 1) if minutes else None,
            "prompt_tokens_client": client,
            "server_cached_tokens": self.server_cached_tokens,
            "server_predicted_tokens": self.server_predicted_tokens,
            "wall_s": round(self.wall_s, 1),
            "first_error": next((p.first_error for p in self.people if p.first_error), None),
            "people": [p.summary() for p in self.people],
        }


# ---------------------------------------------------------------------------------------------------- typing
class _Pending:
    """One keystroke's request: answered or superseded, whichever happens first."""

    __slots__ = ("t0", "lock", "done", "superseded", "cancel", "conn", "thread")

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.lock = threading.Lock()
        self.done = False
        self.superseded = False
        self.cancel = threading.Event()
        self.conn: http.client.HTTPConnection | None = None
        self.thread: threading.Thread | None = None

    def finish(self) -> bool:
        """The answer came: True if it is shown (nothing superseded it first)."""
        with self.lock:
            if self.superseded:
                return False
            self.done = True
            return True

    def supersede(self) -> bool:
        with self.lock:
            if self.done or self.superseded:
                return False
            self.superseded = True
            conn = self.conn
        self.cancel.set()
        if conn is not None and conn.sock is not None:  # wakes the worker blocked in recv; the server sees EOF
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return True


def _type(script: Script, cps: float, res: PersonResult, start: threading.Event, worker: Callable,
          tick: Callable[[], None]) -> None:
    """The person: a keystroke every 1/cps s, each one's request in a thread of its own, superseding the last."""
    start.wait()
    period = 1.0 / cps
    t_start = time.perf_counter()
    prev: _Pending | None = None
    threads: list[threading.Thread] = []
    for k, ks in enumerate(script.keystrokes):
        delay = t_start + k * period - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if prev is not None and prev.supersede():
            with res.lock:
                res.superseded += 1
        p = _Pending()
        t = threading.Thread(target=worker, args=(p, ks), daemon=True)
        p.thread = t
        with res.lock:
            res.keystrokes += 1
        t.start()
        threads.append(t)
        prev = p
        tick()
    res.seconds = len(script.keystrokes) / cps
    if prev is not None:
        prev.thread.join(FINAL_WAIT_S)
        if prev.thread.is_alive() and prev.supersede():
            res.error(f"no answer within {FINAL_WAIT_S:g} s of the last keystroke")
    for t in threads:
        t.join(FINAL_WAIT_S)


def _codefill_worker(engine, script: Script, res: PersonResult, seen: list) -> Callable:
    def work(p: _Pending, ks: Keystroke) -> None:
        try:
            c = engine.complete(script.request(ks), cancel=p.cancel)
        except Exception as exc:  # a server error answers this keystroke with nothing; the person types on
            if p.finish():
                res.error(f"{type(exc).__name__}: {exc}")
            return
        ms = (time.perf_counter() - p.t0) * 1000
        tm = engine.backend.stats.get("timings")
        with res.lock:
            res.prompt_tokens += c.timings.prompt_evaluated
            if isinstance(tm, dict) and tm is not seen[0]:  # a new last event (each request's is a new dict)
                seen[0] = tm
                res.reported_prompt_n += int(tm.get("prompt_n") or 0)
                res.reported += 1
        if c.stop_reason == StopReason.CANCELLED:
            if p.finish():  # the engine cancelled it without our supersession (should not happen): not shown
                with res.lock:
                    res.superseded += 1
            return
        if p.finish():
            with res.lock:
                res.shown += 1
                res.latencies_ms.append(ms)
                res.local += c.stop_reason in (StopReason.TYPED, StopReason.CACHE)

    return work


def _raw_worker(h: Http, route: str, script: Script, res: PersonResult, seed: int) -> Callable:
    path = h.path("/infill" if route == "infill" else "/completion")

    def work(p: _Pending, ks: Keystroke) -> None:
        rows, line, char = script.state(ks)
        payload = json.dumps(raw_body(route, rows, line, char, seed)).encode("utf-8")
        conn = h.connection()
        try:
            try:
                conn.connect()
            except OSError as exc:
                p.finish()
                res.error(f"connect: {exc}")
                return
            with p.lock:
                if p.superseded:
                    return
                p.conn = conn
            try:
                conn.request("POST", path, body=payload, headers=h.headers())
            except OSError:
                if not p.cancel.is_set():
                    p.finish()
                    res.error("the server closed the connection")
                return
            with res.lock:
                res.requests += 1
            try:
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                if not p.cancel.is_set() and p.finish():
                    res.error(f"{type(exc).__name__}: {exc}")
                return
            ms = (time.perf_counter() - p.t0) * 1000
            if resp.status >= 400:
                if p.finish():
                    res.error(f"HTTP {resp.status}: {error_message(data, h.api_key)}")
                return
            try:
                tm = (json.loads(data).get("timings") or {})
            except (ValueError, AttributeError):
                tm = {}
            with res.lock:
                res.prompt_tokens += int(tm.get("prompt_n") or 0)
            if p.finish():
                with res.lock:
                    res.shown += 1
                    res.latencies_ms.append(ms)
        finally:
            conn.close()

    return work


def _delta(m0: dict | None, m1: dict | None, key: str) -> int | None:
    if m0 is None or m1 is None or key not in m0 or key not in m1:
        return None
    return int(m1[key] - m0[key])


def _run_column(name: str, scripts: list[Script], cps: float, workers: list[Callable], results: list[PersonResult],
                h: Http, tick: Callable[[], None]) -> ColumnResult:
    m0 = read_metrics(h)
    start = threading.Event()
    people = [threading.Thread(target=_type, args=(s, cps, r, start, w, tick), daemon=True)
              for s, r, w in zip(scripts, results, workers)]
    for t in people:
        t.start()
    t0 = time.perf_counter()
    start.set()
    for t in people:
        t.join()
    wall = time.perf_counter() - t0
    wait_idle(h)
    m1 = read_metrics(h)
    return ColumnResult(name, results, wall_s=wall, server_prompt_tokens=_delta(m0, m1, "prompt_tokens_total"),
                        server_cached_tokens=_delta(m0, m1, "prompt_tokens_cached_total"),
                        server_predicted_tokens=_delta(m0, m1, "tokens_predicted_total"))


@dataclass
class TeamRun:
    editors: int
    codefill: ColumnResult
    raw: ColumnResult

    def summary(self) -> dict:
        return {"editors": self.editors, "codefill": self.codefill.summary(), "raw": self.raw.summary()}


@dataclass
class TeamPlan:
    """What a run will do, known before it starts (the CLI prints it first)."""

    editors: list[int]
    scripts: list[Script]  # for the largest N; N people type scripts[:N]
    cps: float

    def keystrokes(self, n: int) -> int:
        return sum(len(s.keystrokes) for s in self.scripts[:n])

    def typing_s(self, n: int) -> float:
        """Typing time of one column at N people: the longest script's."""
        return max(len(s.keystrokes) for s in self.scripts[:n]) / self.cps

    @property
    def total_keystrokes(self) -> int:
        return 2 * sum(self.keystrokes(n) for n in self.editors)

    @property
    def total_typing_s(self) -> float:
        return 2 * sum(self.typing_s(n) for n in self.editors)


def plan(files: Sequence[tuple[str, str]], editors: Sequence[int], n_lines: int = 4, cps: float = 8.0,
         seed: int = 0) -> TeamPlan:
    if not editors or min(editors) < 1:
        raise ValueError("--editors needs numbers of people, each at least 1")
    if cps <= 0:
        raise ValueError("--cps must be positive")
    if n_lines < 1:
        raise ValueError("--lines must be at least 1")
    return TeamPlan(list(editors), make_scripts(files, max(editors), n_lines, seed), cps)


def run_team(settings, the_plan: TeamPlan, *, model: str | None = None, config=None, seed: int = 0,
             erase: bool = True, progress: Progress | None = None,
             connect: Callable | None = None) -> tuple[list[TeamRun], dict]:
    """Both columns for every N of the plan. Returns (runs, info): info says the raw route, whether the server's
    counters were read, whether slots could be erased."""
    from codefill.engine import Engine, EngineConfig

    config = config or EngineConfig()
    connect = connect or (lambda: Engine.connect(settings, config, model=model))
    h = Http(settings.url, settings.api_key)
    route, why = probe_raw_route(h)
    info = {"raw_route": route, "raw_route_detail": why, "server_metrics": read_metrics(h) is not None,
            "slots_erased": None}
    done = [0]
    lock = threading.Lock()
    total = the_plan.total_keystrokes

    def ticker(label: str) -> Callable[[], None]:
        def tick() -> None:
            with lock:
                done[0] += 1
                n = done[0]
            if progress:
                progress(n, total, label)
        return tick

    runs = []
    for n in the_plan.editors:
        scripts = the_plan.scripts[:n]
        # codefill: one engine per person, connected before the clock starts
        if erase:
            info["slots_erased"] = erase_slots(h) and info["slots_erased"] is not False
        if progress:
            progress(done[0], total, f"N={n}: connecting {n} codefill clients")
        engines = [connect() for _ in scripts]
        try:
            results = [PersonResult(s.person, s.path) for s in scripts]
            workers = [_codefill_worker(e, s, r, [None]) for e, s, r in zip(engines, scripts, results)]
            cf = _run_column("codefill", scripts, the_plan.cps, workers, results, h, ticker(f"N={n} codefill"))
            for e, r in zip(engines, results):
                r.requests = int(e.backend.stats.get("requests", 0))
            cf.route = "codefill client (streamed token-id /completion)"
        finally:
            for e in engines:
                try:
                    e.close()
                except Exception:
                    pass
        # raw llama.vim-style
        if route is None:
            raw = ColumnResult("raw", [], skipped=why)
            with lock:
                done[0] += the_plan.keystrokes(n)
        else:
            if erase:
                info["slots_erased"] = erase_slots(h) and info["slots_erased"] is not False
            results = [PersonResult(s.person, s.path) for s in scripts]
            workers = [_raw_worker(h, route, s, r, seed) for s, r in zip(scripts, results)]
            raw = _run_column("raw", scripts, the_plan.cps, workers, results, h, ticker(f"N={n} raw"))
            raw.route = why
        runs.append(TeamRun(n, cf, raw))
    return runs, info


# ---------------------------------------------------------------------------------------------------- report
def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _pair(a, b) -> str:
    return f"{'-' if a is None else a} / {'-' if b is None else b}"


def format_table(runs: list[TeamRun]) -> list[str]:
    """One row per N: codefill vs raw side by side."""
    head = ["N", "codefill p50/p95 ms", "raw p50/p95 ms", "worst p95 c/r", "keystrokes", "requests c/r",
            "shown c/r", "superseded c/r", "prompt tok c/r", "tok/person-min c/r"]
    rows = []
    for r in runs:
        c, w = r.codefill.summary(), r.raw.summary()
        skipped = "skipped" in w
        g = (lambda k: None) if skipped else w.get
        mark = "" if c["prompt_tokens_source"].startswith("server") else "≈"
        rows.append([
            str(r.editors),
            f"{_ms(c['p50_ms'])} / {_ms(c['p95_ms'])}",
            f"{_ms(g('p50_ms'))} / {_ms(g('p95_ms'))}",
            f"{_ms(c['worst_person_p95_ms'])} / {_ms(g('worst_person_p95_ms'))}",
            str(c["keystrokes"]),
            _pair(c["requests"], g("requests")),
            _pair(c["shown"], g("shown")),
            _pair(c["superseded"], g("superseded")),
            mark + _pair(c["prompt_tokens"], g("prompt_tokens")),
            _pair(_ms(c["prompt_tokens_per_person_minute"]), _ms(g("prompt_tokens_per_person_minute"))),
        ])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    fmt = lambda cells: "  ".join(x.rjust(wd) for x, wd in zip(cells, widths))
    return [fmt(head), fmt(["-" * wd for wd in widths])] + [fmt(row) for row in rows]


def format_people(runs: list[TeamRun]) -> list[str]:
    out = []
    for r in runs:
        for col in (r.codefill, r.raw):
            if col.skipped:
                continue
            out.append(f"N={r.editors} {col.name}:")
            for p in col.people:
                s = p.summary()
                out.append(f"  person {s['person']:>2} {s['path']}: p50/p95 {_ms(s['p50_ms'])} / {_ms(s['p95_ms'])} ms,"
                           f" {s['keystrokes']} keys, {s['requests']} requests, {s['shown']} shown,"
                           f" {s['superseded']} superseded, {s['errors']} errors")
    return out
