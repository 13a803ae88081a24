"""One place for the engine's defaults. Layering (defaults < config file < environment < flags) happens in the
adapters (cli/, lsp/); the engine receives a finished, frozen `EngineConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace


@dataclass(frozen=True)
class BudgetConfig:
    """Token budget of the prompt. llama-server's split: prefix 3/4, suffix 1/4, extra context fills the rest."""

    # CPU defaults: a prompt evaluates at ~250 tokens/s on two laptop cores, and every token of a fresh window costs
    # the person waiting at a new position. With the model on a GPU, `Engine.load` multiplies these by GPU_SCALE.
    prefix_tokens: int = 512  # text before the cursor, cut at line boundaries
    suffix_tokens: int = 128  # text after the cursor (FIM models only)
    extra_tokens: int = 256  # snippets from other files

    def scaled(self, factor: int) -> "BudgetConfig":
        return BudgetConfig(self.prefix_tokens * factor, self.suffix_tokens * factor, self.extra_tokens * factor)


GPU_SCALE = 4


# Bounds of the user-facing settings (the CLI's flags and the language server's settings check them).
MAX_TOKENS = 4096  # per completion; the engine also keeps it within half of the context
MAX_SUGGESTIONS = 16
MAX_THREADS = 256
MIN_CONTEXT, MAX_CONTEXT = 256, 131072

# Sampling settings for candidates drawn beside the greedy one (alternatives, adaptive samples, pass@k) when the
# request itself is greedy: the HumanEval pools behind the gate and the selectors were drawn with them.
SAMPLE_TEMPERATURE = 0.8
SAMPLE_TOP_P = 0.95


@dataclass(frozen=True)
class DecodeConfig:
    max_tokens: int = 128  # per completion
    max_line_tokens: int = 64  # single-line completions: a runaway line is cut here
    max_lines: int = 16  # block completions
    # Decoding time per completion, prompt evaluation not included (llama.vim's t_max_predict_ms); None: no limit.
    # A block cut by time keeps its complete lines only.
    time_budget_ms: float | None = 1000.0


@dataclass(frozen=True)
class EngineConfig:
    model_path: str | None = None  # None: the embedded default model
    n_ctx: int = 4096
    n_batch: int = 512
    n_threads: int | None = None  # None: leave a core to the editor (see llama.default_threads)
    n_gpu_layers: int = -1  # -1: everything on the GPU when llama.cpp was built with Metal/CUDA
    n_seq: int = 1  # parallel sequences (repeated sampling uses more)
    # Warm windows: prompts of places recently left stay in the KV cache (sharing its n_ctx cells, at most three
    # quarters of them with the current prompt), so going back to one of them does not evaluate its prompt again.
    # Their cells lengthen every attention: on 2 cores, 3 windows cost ~20% of decoding speed elsewhere (6: more).
    windows: int = 3
    spm: bool | None = None  # suffix-first FIM order; None: the family's default
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    cache_entries: int = 256  # completion cache (LRU)

    def with_overrides(self, **kw) -> "EngineConfig":
        """Copy with overrides; nested keys as `budget.prefix_tokens=…` or `decode__max_tokens=…`."""
        top, budget, decode = {}, {}, {}
        for k, v in kw.items():
            if v is None and k != "time_budget_ms":
                continue
            key = k.replace("__", ".")
            if key.startswith("budget."):
                budget[key[7:]] = v
            elif key.startswith("decode."):
                decode[key[7:]] = v
            elif key in {f.name for f in fields(BudgetConfig)}:
                budget[key] = v
            elif key in {f.name for f in fields(DecodeConfig)}:
                decode[key] = v
            else:
                top[key] = v
        out = replace(self, **top) if top else self
        if budget:
            out = replace(out, budget=replace(out.budget, **budget))
        if decode:
            out = replace(out, decode=replace(out.decode, **decode))
        return out
