"""Settings from `initialize` (`initializationOptions`) and `workspace/didChangeConfiguration`.

Keys (camelCase, at the top level or under a `codefill` section, as editors send them):

    model            GGUF path or REPO/FILE.gguf (default: the configured model, else the embedded one)
    maxTokens        tokens per completion (default: the engine's, 128)
    mode             "auto" | "line" | "block"  (single-line or multi-line completions; auto decides per cursor)
    timeBudgetMs     decoding time limit per completion; null or 0: none (default: the engine's, 1000)
    enable           false turns completions off
    disabledLanguages  language ids ("markdown", …) that get no completions; `languages: {"markdown": false}` too
    suggestions      alternatives for an explicitly invoked inline completion (default 3)
    temperature      sampling temperature of those alternatives (default 0.7)
    threads, contextSize   llama.cpp threads and context size
    warmWindows      prompts of recently left places kept in the KV cache (default 3; 0: none): going back to one is
                     ~8x faster, decoding elsewhere ~20% slower (attention covers their cells too)
    prefixTokens     tokens of text before the cursor in the prompt (default: 512 on a CPU, 2048 on a GPU); fewer
                     answer sooner at a new position, at some cost in quality (bench/prompt_budget.py)
    snippets         other open documents given to the model as context (default 4; 0: none)
    gateThreshold    hide automatic suggestions whose confidence (the gate's probability that the completion is
                     right) is below this; 0 shows everything; null (default): the gate file's threshold (0.389 for the
                     shipped gate, which keeps 80% of the right answers)
    adaptiveSamples  extra candidates decoded (sharing the prompt) when the gate is unsure of the first answer, the
                     best one shown instead; 0: never; null (default): 7 when the model runs on a GPU (a batch of
                     sequences costs about one there), 0 on a CPU (measured on 2 cores: +1.6 points of right
                     suggestions for +1.2 s at a new position; bench/lsp_latency.py) and on an inference server
                     (each candidate is one more stream on a shared server)
    gateFile         a gate fitted for your model (JSON, see bench/scaling_gate.py); default: the shipped one
    suffixRanking    for a model without FIM tokens (it completes from the text before the cursor alone), rank
                     candidates by how likely the model finds the text after the cursor once each is in place:
                     "invoked" (default): an invoked line completion decodes at least 7 alternatives and ranks them
                     with the greedy answer (blocks as before: there it gained nothing measurable and cost most);
                     "always": invoked blocks too, and automatic requests — when the gate is unsure,
                     `adaptiveSamples` more candidates (7 where that is 0) are decoded and the one the suffix supports
                     best is shown; "off": never. Nothing changes for FIM models (their prompt holds the suffix) or
                     on an inference server (it cannot score given tokens) (bench/results/suffix-ranking.md)
    server           an inference server to complete with instead of the in-process model: llama-server
                     (http://host:8080) or OpenAI-compatible (http://host:8000/v1); null (default): none, nothing
                     leaves the machine. Also CODEFILL_SERVER or `server` in the config file
    serverModel      the model name an OpenAI-compatible server routes by (default: the first it lists)
    apiKey           bearer key for the server (also CODEFILL_API_KEY or `api_key` in the config file); never
                     logged or shown. With `server` set, `model` names the served model's GGUF for exact local
                     tokenization (else the server's /tokenize is used)
    warmup           use idle time (default: true in-process, false on an inference server): when a document opens,
                     changes or the cursor moves (`codefill/didChangeCursor`, sent by codefill's editor integrations),
                     evaluate the prompt the next request there needs; after a suggestion is shown, decode the
                     completion that follows it once accepted (Tab, Tab). Background work stops at once for a request
    warmupTokensPerMinute  the most tokens background work evaluates or decodes per minute (default 6000)
    stats            record acceptance statistics on this machine (default true; false: nothing is recorded): each
                     shown suggestion, whether it was accepted (the items carry the command `codefill.accepted`)
                     and how much of it is still there 30 s and 2 min later, with latency, languageId, model and
                     trigger kind, as JSON lines in $CODEFILL_STATE_DIR or $XDG_STATE_HOME/codefill (default
                     ~/.local/state/codefill/stats.jsonl, at most 2 x 4 MiB); never sent anywhere. `codefill stats`
                     reads them
    completionFallback  offer `textDocument/completion` too: true, false, or null (default) for "only when the client
                     has no inline completion" (decided at `initialize`)

Unknown keys are ignored; a bad value is reported (window/showMessage) and the previous value kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from codefill.engine.config import MAX_CONTEXT, MAX_SUGGESTIONS, MAX_THREADS, MAX_TOKENS, MIN_CONTEXT
from codefill.engine.types import DEFAULT, EngineDefault

_MISSING = object()


@dataclass(frozen=True)
class Settings:
    model: str | None = None
    max_tokens: int | None = None
    mode: str = "auto"
    time_budget_ms: float | None | EngineDefault = DEFAULT  # DEFAULT: the engine's; None: no limit
    enable: bool = True
    disabled_languages: frozenset[str] = field(default_factory=frozenset)
    suggestions: int = 3
    temperature: float = 0.7
    threads: int | None = None
    context_size: int | None = None
    prefix_tokens: int | None = None
    warm_windows: int | None = None
    snippets: int = 4
    completion_fallback: bool | None = None
    warmup: bool | None = None  # None: on in-process, off on an inference server
    warmup_tokens_per_minute: int = 6000
    gate_threshold: float | None = None  # None: the gate file's threshold
    adaptive_samples: int | None = None  # None: 7 with GPU offload, 0 on CPU
    gate_file: str | None = None
    server: str | None = None
    server_model: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never shown
    stats: bool = True  # acceptance statistics, local only (lsp/stats.py)
    suffix_ranking: str = "invoked"  # "off" | "invoked" | "always" (prefix-only models in-process; see inline.py)

    def model_key(self) -> tuple:
        """What the loaded model depends on: a change here reloads it."""
        return (self.model, self.threads, self.context_size, self.prefix_tokens, self.warm_windows, self.server,
                self.server_model, self.api_key)

    def enabled_for(self, language: str | None) -> bool:
        return self.enable and (language or "") not in self.disabled_languages


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _pos_int(v):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError("a positive integer")
    return v


def _budget(v):
    if v is None or v == 0:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ValueError("a number of milliseconds, or null for no limit")
    return float(v)


def _mode(v):
    if v not in ("auto", "line", "block"):
        raise ValueError('"auto", "line" or "block"')
    return v


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError("true or false")
    return v


SUFFIX_RANKING = ("off", "invoked", "always")


def _suffix_ranking(v):
    if v not in SUFFIX_RANKING:
        raise ValueError('"off", "invoked" or "always"')
    return v


def _langs(v):
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise ValueError("a list of language ids")
    return frozenset(v)


def _opt_str(expected: str):
    """A parser for an optional string ("" and null: none)."""

    def parse(v):
        if v is None or v == "":
            return None
        if not isinstance(v, str):
            raise ValueError(expected)
        return v

    return parse


def _int(low: int, high: int | None, expected: str):
    """A parser for an integer from `low` to `high`."""

    def parse(v):
        if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
            raise ValueError(expected)
        return v

    return parse


def _opt_int(low: int, high: int | None, expected: str):
    """A parser for an optional integer from `low` to `high` (null: the default)."""
    parse_int = _int(low, high, expected)
    return lambda v: None if v is None else parse_int(v)


_model = _opt_str("a path or REPO/FILE.gguf")
_url = _opt_str("a URL such as http://host:8080 or http://host:8000/v1")
_name = _opt_str("a model name")
_key = _opt_str("a string")
_path = _opt_str("a file path")
_prefix = _opt_int(32, None, "a number of tokens (at least 32), or null for the default")
_windows = _opt_int(0, 16, "an integer from 0 to 16, or null for the default")
_samples = _opt_int(0, 32, "an integer from 0 to 32, or null for the default")
# Upper bounds: a value past them is a typo or an attack, and each has a cost that grows with it (a completion of
# max_tokens ≥ the context would leave no room for the document; the engine caps it at half the context too).
_max_tokens = _opt_int(1, MAX_TOKENS, f"a number of tokens from 1 to {MAX_TOKENS}, or null for the default")
_suggestions = _int(1, MAX_SUGGESTIONS, f"an integer from 1 to {MAX_SUGGESTIONS}")
_threads = _opt_int(1, MAX_THREADS, f"an integer from 1 to {MAX_THREADS}, or null for the default")
_context = _opt_int(MIN_CONTEXT, MAX_CONTEXT, f"a number of tokens from {MIN_CONTEXT} to {MAX_CONTEXT}, or null")


def _count(v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError("a non-negative integer")
    return v


def _threshold(v):
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
        raise ValueError("a probability in [0, 1], or null for the gate's own threshold")
    return float(v)


def _opt_bool(v):
    return None if v is None else _bool(v)


def _temperature(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 2:
        raise ValueError("a number in (0, 2]")
    return float(v)


_PARSERS = {
    "model": _model, "max_tokens": _max_tokens, "mode": _mode, "time_budget_ms": _budget, "enable": _bool,
    "disabled_languages": _langs, "suggestions": _suggestions, "temperature": _temperature, "threads": _threads,
    "context_size": _context, "prefix_tokens": _prefix, "warm_windows": _windows, "snippets": _count, "completion_fallback": _opt_bool,
    "warmup": _opt_bool, "warmup_tokens_per_minute": _count,
    "gate_threshold": _threshold, "adaptive_samples": _samples, "gate_file": _path, "server": _url,
    "server_model": _name, "api_key": _key, "stats": _bool, "suffix_ranking": _suffix_ranking,
}
_SECRET = {"api_key"}


def merge(base: Settings, raw: Any) -> tuple[Settings, list[str]]:
    """`base` updated with the keys present in `raw` (a JSON object); returns the settings and the problems found."""
    problems: list[str] = []
    if raw is None or raw == []:  # Lua encodes an empty table `{}` as the JSON list `[]`: no settings
        return base, problems
    if not isinstance(raw, dict):
        return base, [f"settings must be a JSON object, got {type(raw).__name__}"]
    if isinstance(raw.get("codefill"), dict):
        raw = raw["codefill"]
    updates: dict[str, Any] = {}
    for f in fields(Settings):
        value = raw.get(_camel(f.name), raw.get(f.name, _MISSING))
        if value is _MISSING:
            continue
        try:
            updates[f.name] = _PARSERS[f.name](value)
        except ValueError as exc:
            shown = "<hidden>" if f.name in _SECRET else repr(value)
            problems.append(f"setting {_camel(f.name)}={shown} ignored: expected {exc}")
    if "multiline" in raw:  # a boolean alias: true → block, false → line
        if isinstance(raw["multiline"], bool):
            updates["mode"] = "block" if raw["multiline"] else "line"
        else:
            problems.append(f"setting multiline={raw['multiline']!r} ignored: expected true or false")
    langs = raw.get("languages")
    if isinstance(langs, dict):
        off = set(updates.get("disabled_languages", base.disabled_languages))
        for lang, on in langs.items():
            if on is False or (isinstance(on, dict) and on.get("enable") is False):
                off.add(lang)
            else:
                off.discard(lang)
        updates["disabled_languages"] = frozenset(off)
    return replace(base, **updates), problems
