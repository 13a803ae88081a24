"""A thin runtime over llama.cpp's C API (through llama-cpp-python's ctypes bindings).

Why not `llama_cpp.Llama`: we need token-level prompts (its FIM path uses token id 0 for the FIM tokens), control of
model parameters it does not expose (`use_extra_bufts`, see hardware.py), a load progress callback, several sequences
sharing one prompt (repeated sampling), and exact accounting of which prompt tokens were reused from the KV cache.
This module knows tokens and sequences, nothing about documents or prompts.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import sys
import threading
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from . import hardware
from .errors import CodefillError, ModelLoadError, ModelNotFoundError, ModelUnreadableError
from .ggufcheck import check_gguf
from .sampler import Draw, Sampler

log = logging.getLogger(__name__)

_backend_lock = threading.Lock()
_backend_ready = False
_llama_log: collections.deque[str] = collections.deque(maxlen=200)


def _llama():
    import llama_cpp

    return llama_cpp


def _init_backend() -> None:
    """Initialise llama.cpp once and route its log into a ring buffer (errors are shown when a load fails)."""
    global _backend_ready, _log_cb
    with _backend_lock:
        if _backend_ready:
            return
        L = _llama()

        @L.llama_log_callback
        def _cb(level, text, _user):  # pragma: no cover - called from C
            try:
                msg = text.decode("utf-8", errors="replace")
            except Exception:
                return
            _llama_log.append(msg)
            if os.environ.get("CODEFILL_LLAMA_LOG"):
                sys.stderr.write(msg)

        _log_cb = _cb  # keep a reference: C holds the pointer
        L.llama_log_set(_cb, ctypes.c_void_p(0))
        L.llama_backend_init()
        _backend_ready = True


def last_llama_errors(n: int = 3) -> str:
    lines = [ln.strip() for ln in _llama_log if ln.strip()]
    errs = [ln for ln in lines if "error" in ln.lower() or "failed" in ln.lower()]
    return "; ".join((errs or lines)[-n:])


def check_model_file(path: str) -> None:
    """Fail with a one-line error before llama.cpp sees a file it would choke on."""
    if not os.path.exists(path):
        raise ModelNotFoundError(f"model not found: {path}")
    if os.path.isdir(path):
        raise ModelUnreadableError(f"model path is a directory, not a GGUF file: {path}")
    try:  # magic, version, then the metadata (vocabulary, special-token ids), bounded, before llama.cpp asserts on it
        check_gguf(path)
    except OSError as exc:
        raise ModelUnreadableError(f"cannot read model {path}: {exc.strerror or exc}") from None


def default_threads() -> int:
    """Leave a core to the editor: llama.cpp's worker threads spin-wait on each other, and when a core they count on is
    busy a decode can get 10-25x slower (measured on a 2-core machine: 4.3 s vs 25 ms per token). One thread per
    core less one on small machines, one per physical core (half the logical ones) on larger ones."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 4
    return max(1, n - 1) if n <= 4 else n // 2


def speculation(setting: str | None, exact: bool) -> bool:
    """Whether greedy decoding drafts and verifies (LlamaRuntime.verify), from CODEFILL_SPECULATIVE: unset or
    "auto", where that gives exactly the greedy answers (`exact`: LlamaRuntime.verify_exact); "1"/"on", everywhere
    (answers may then differ from one-token decoding at close choices); "0"/"off", never."""
    value = (setting or "auto").strip().lower()
    if value in ("0", "off", "false", "no"):
        return False
    if value in ("1", "on", "true", "yes"):
        return True
    return exact


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n, limit = 0, min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


class LlamaRuntime:
    """One model, one context, `n_seq` sequences sharing the KV cache: the in-process implementation of
    backend.Backend. Not thread-safe: callers serialise."""

    def __init__(
        self,
        path: str,
        *,
        n_ctx: int = 4096,
        n_batch: int = 512,
        n_threads: int | None = None,
        n_gpu_layers: int = -1,
        n_seq: int = 1,
        windows: int = 0,
        vocab_only: bool = False,
        use_extra_bufts: bool | None = None,
        progress: Callable[[float], None] | None = None,
    ):
        check_model_file(path)
        _init_backend()
        L = _llama()
        self.L = L
        self.path = path
        self.vocab_only = vocab_only
        mp = L.llama_model_default_params()
        mp.vocab_only = vocab_only
        mp.n_gpu_layers = n_gpu_layers if L.llama_supports_gpu_offload() else 0
        if n_gpu_layers < 0:
            mp.n_gpu_layers = 999 if L.llama_supports_gpu_offload() else 0
        self.accelerated = mp.n_gpu_layers > 0  # offloaded to a GPU (Metal/CUDA build of llama.cpp)
        if use_extra_bufts is None and not vocab_only:
            use_extra_bufts = hardware.use_extra_buffer_types(path)
        mp.use_extra_bufts = bool(use_extra_bufts) if use_extra_bufts is not None else True
        self.use_extra_bufts = mp.use_extra_bufts
        if progress is not None:

            @L.llama_progress_callback
            def _progress(fraction, _user):  # pragma: no cover - called from C
                try:
                    progress(float(fraction))
                except Exception:  # a broken progress bar must not abort the load
                    pass
                return True

            self._progress_cb = _progress
            mp.progress_callback = _progress
        _llama_log.clear()
        self.model = L.llama_model_load_from_file(path.encode("utf-8"), mp)
        if not self.model:
            detail = last_llama_errors()
            raise ModelLoadError(f"llama.cpp could not load {path}" + (f": {detail}" if detail else ""))
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.ctx = None
        self.n_ctx = 0
        self.n_batch = n_batch
        self.n_seq = n_seq
        # Warm windows: sequences n_seq … n_seq+windows-1 keep prompts that sequence 0 moved away from (see
        # `sync`), so that going back to a recent place in a file re-uses its KV cache instead of evaluating it again.
        self.windows = max(0, windows)
        self._slots = list(range(n_seq, n_seq + self.windows))  # least recently used first
        self._spare = n_seq + self.windows  # one more sequence, to swap sequence 0 with a window
        n_all = n_seq + self.windows + (1 if self.windows else 0)
        self._seq_tokens: list[list[int]] = [[] for _ in range(n_all)]
        self._logits_idx: dict[int, int] = {}
        self._piece_cache: dict[int, bytes] = {}
        self._prompt_len = 0  # tokens of the prompt last evaluated on sequence 0 (see `evaluate`)
        self._prompt_logits: np.ndarray | None = None
        self.n_threads = n_threads or default_threads()
        # Speculative decoding without a draft model: decode.run drafts from the sequence's own tokens and `verify`
        # checks a draft in one batch (see `speculation`). `speculative` can be flipped at any time (A/B runs).
        self.speculative = False
        # What one more token in a `verify` batch costs, in one-token decodes: measured (a moving average over
        # verify batches against one-token `feed`s) unless `measure_verify_cost` is turned off (tests, benchmarks).
        # decode.draft_length drafts less as it grows.
        self.verify_cost = 0.3
        self.measure_verify_cost = True
        self._one_token_s: float | None = None  # moving average of a one-token feed's seconds
        self.verify_batches = 0  # counters over the runtime's life (see `verify`); per request: decode.Stream's
        self.drafted_tokens = 0
        self.accepted_tokens = 0
        if vocab_only:
            return
        cp = L.llama_context_default_params()
        n_ctx_train = L.llama_model_n_ctx_train(self.model)
        cp.n_ctx = min(n_ctx, n_ctx_train) if n_ctx_train > 0 else n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = n_all
        cp.n_threads = self.n_threads
        cp.n_threads_batch = self.n_threads
        cp.no_perf = True
        if hasattr(cp, "kv_unified"):
            cp.kv_unified = True  # sequences share one cache of n_ctx cells (needed to copy a prompt between them)
        elif self.windows:
            self.windows, self._slots = 0, []  # per-sequence caches cannot share cells: no warm windows
            cp.n_seq_max = n_seq
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            detail = last_llama_errors()
            L.llama_model_free(self.model)
            self.model = None
            raise ModelLoadError(f"llama.cpp could not create a context for {path}" + (f": {detail}" if detail else ""))
        self.n_ctx = L.llama_n_ctx(self.ctx)
        self.mem = L.llama_get_memory(self.ctx)
        self.speculative = speculation(os.environ.get("CODEFILL_SPECULATIVE"), self.verify_exact)
        self._batch_cap = max(n_batch, n_seq)
        self._batch = L.llama_batch_init(self._batch_cap, 0, n_all)

    @property
    def verify_exact(self) -> bool:
        """Whether a batch of tokens gets bit-for-bit the logits that one token at a time gets, so that speculative
        decoding (`verify`) gives exactly the greedy answers. It does on the CPU with one thread. With several, a
        single token's flash attention splits the cached keys among the threads (llama.cpp's split-KV path, once a
        sequence holds a few hundred tokens) and rounds otherwise: logits move by up to ~1, log-probabilities by
        1e-2 to 1, and close choices flip (measured with SmolLM2-135M Q4_1 on 2 threads: 7 of 54 greedy answers
        differed). GPU kernels also depend on the batch size."""
        return not self.accelerated and self.n_threads == 1

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        L = self.L
        if getattr(self, "_batch", None) is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        if self.ctx:
            L.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            L.llama_model_free(self.model)
            self.model = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # ---------------------------------------------------------------- metadata
    def metadata(self) -> dict[str, str]:
        L = self.L
        out: dict[str, str] = {}
        buf = ctypes.create_string_buffer(1 << 16)
        for i in range(L.llama_model_meta_count(self.model)):
            k = L.llama_model_meta_key_by_index(self.model, i, buf, len(buf))
            if k < 0:
                continue
            key = buf.value.decode("utf-8", errors="replace")
            v = L.llama_model_meta_val_str_by_index(self.model, i, buf, len(buf))
            if v < 0:
                continue
            out[key] = buf.value.decode("utf-8", errors="replace")
        return out

    def describe(self) -> str:
        buf = ctypes.create_string_buffer(256)
        self.L.llama_model_desc(self.model, buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    # ---------------------------------------------------------------- vocabulary
    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = False) -> list[int]:
        """Tokens for `text`. User text is never parsed for special tokens (parse_special=False) by default."""
        data = text.encode("utf-8")
        n_max = len(data) + 16
        arr = (self.L.llama_token * n_max)()
        n = self.L.llama_tokenize(self.vocab, data, len(data), arr, n_max, add_special, parse_special)
        if n < 0:
            n_max = -n
            arr = (self.L.llama_token * n_max)()
            n = self.L.llama_tokenize(self.vocab, data, len(data), arr, n_max, add_special, parse_special)
        return list(arr[:n])

    def token_piece(self, token: int, special: bool = False) -> bytes:
        """The bytes a token stands for (special tokens render empty unless `special`)."""
        key = token if not special else -1 - token
        piece = self._piece_cache.get(key)
        if piece is None:
            buf = ctypes.create_string_buffer(64)
            n = self.L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self.L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            piece = buf.raw[:n]
            self._piece_cache[key] = piece
        return piece

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str:
        return b"".join(self.token_piece(t, special) for t in tokens).decode("utf-8", errors="replace")

    def token_text(self, token: int) -> str:
        raw = self.L.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def special_token(self, text: str) -> int | None:
        """The id of a special token given its text, if the vocabulary has it as a single token."""
        ids = self.tokenize(text, add_special=False, parse_special=True)
        if len(ids) == 1 and self.token_text(ids[0]) == text:
            return ids[0]
        return None

    def is_eog(self, token: int) -> bool:
        return bool(self.L.llama_vocab_is_eog(self.vocab, token))

    def _id(self, fn: str) -> int | None:
        v = getattr(self.L, fn)(self.vocab)
        return None if v is None or v < 0 else int(v)

    @property
    def bos(self) -> int | None:
        return self._id("llama_vocab_bos")

    @property
    def eos(self) -> int | None:
        return self._id("llama_vocab_eos")

    @property
    def add_bos(self) -> bool:
        return bool(self.L.llama_vocab_get_add_bos(self.vocab))

    def fim_ids(self) -> dict[str, int]:
        """FIM token ids llama.cpp found (from `tokenizer.ggml.fim_*` keys or by their known texts)."""
        out = {}
        for name in ("pre", "suf", "mid", "pad", "rep", "sep"):
            v = self._id(f"llama_vocab_fim_{name}")
            if v is not None:
                out[name] = v
        return out

    # ---------------------------------------------------------------- KV cache and decoding
    def seq_tokens(self, seq: int = 0) -> list[int]:
        return self._seq_tokens[seq]

    def _decode_batch(self, items: Sequence[tuple[int, int, int, bool]],
                      after: Callable[[int, int], None] | None = None) -> None:
        """items: (token, pos, seq, want_logits). Decoded in chunks of the batch's capacity; `after(start, n)` is
        called after each chunk (items[start : start + n]), while its logits are still in llama.cpp's buffer
        (`llama_get_logits_ith(ctx, i)` for the chunk's i-th item)."""
        L, b = self.L, self._batch
        for start in range(0, len(items), self._batch_cap):
            chunk = items[start : start + self._batch_cap]
            b.n_tokens = len(chunk)
            for i, (tok, pos, seq, want) in enumerate(chunk):
                b.token[i] = tok
                b.pos[i] = pos
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = seq
                b.logits[i] = want
            rc = L.llama_decode(self.ctx, b)
            if rc == 1 and self._drop_windows():  # no room in the KV cache: the warm windows give theirs back
                rc = L.llama_decode(self.ctx, b)
            if rc != 0:
                raise ModelLoadError(f"llama_decode failed ({rc}): the context may be full (n_ctx={self.n_ctx})")
            for i, (_tok, _pos, seq, want) in enumerate(chunk):
                if want:
                    self._logits_idx[seq] = i
            if after is not None:
                after(start, len(chunk))

    def sync(self, tokens: Sequence[int], seq: int = 0) -> tuple[int, int]:
        """Make sequence `seq` hold exactly `tokens` and compute the logits after the last one.

        Only the tokens after the longest common prefix with what the sequence already holds are evaluated.
        With warm windows (sequence 0 only): a prompt that shares more with a kept window than with sequence 0 starts
        from that window, and what sequence 0 held is kept in a window before it is overwritten.
        Returns (reused, evaluated).
        """
        if not tokens:
            raise ValueError("empty prompt")
        if len(tokens) >= self.n_ctx:
            raise ValueError(f"prompt of {len(tokens)} tokens does not fit the context ({self.n_ctx})")
        # (everything cached: the last token is evaluated again, for its logits)
        n = self._keep_common_prefix(tokens, seq, len(tokens) - 1)
        rest = list(tokens[n:])
        self._decode_batch([(t, n + i, seq, i == len(rest) - 1) for i, t in enumerate(rest)])
        self._seq_tokens[seq].extend(rest)
        return n, len(rest)

    def _keep_common_prefix(self, tokens: Sequence[int], seq: int, limit: int) -> int:
        """Cut sequence `seq` back to what it shares with `tokens` (at most `limit` tokens), after starting from the
        warm window that shares most with them (sequence 0); its logits are gone. Returns the tokens kept."""
        n = _common_prefix(self._seq_tokens[seq], tokens)
        if seq == 0 and self._slots:
            n = self._switch_window(tokens, n)
        n = min(n, limit)
        self.L.llama_memory_seq_rm(self.mem, seq, n, -1)
        self._seq_tokens[seq] = list(tokens[:n])
        self._logits_idx.pop(seq, None)
        return n

    # ------------------------------------------------------------ warm windows
    WINDOW_MIN_TOKENS = 64  # a window shorter than this is not worth keeping, a gain smaller than this not worth a switch

    def _switch_window(self, tokens: Sequence[int], n: int) -> int:
        """Before sequence 0 is synced to `tokens` (sharing `n` tokens with it): start from the window that shares the
        most with `tokens` if it beats sequence 0 by enough, and keep what sequence 0 held in a window if that is about
        to be lost — in the window just taken (a swap), else in the least recently used one.
        Returns the new common prefix of sequence 0 and `tokens`."""
        best, best_n = None, n
        for slot in self._slots:
            m = _common_prefix(self._seq_tokens[slot], tokens)
            if m > best_n:
                best, best_n = slot, m
        if best is not None and best_n < n + self.WINDOW_MIN_TOKENS:
            best, best_n = None, n
        current = self._seq_tokens[0]
        lost = len(current) if best is not None else len(current) - n  # a switch replaces all of sequence 0
        keep = len(current) >= self.WINDOW_MIN_TOKENS and lost >= self.WINDOW_MIN_TOKENS and not self._kept(current, best)
        if best is not None:
            if keep:  # swap through the spare sequence (cells are shared, nothing is recomputed)
                self.copy_seq(0, self._spare)
                self.copy_seq(best, 0)
                self.copy_seq(self._spare, best)
                self.truncate(self._spare, 0)
            else:
                self.copy_seq(best, 0)
            self._keep(best)
        elif keep:
            slot = self._slots[0]  # the least recently used
            self.copy_seq(0, slot)
            self._keep(slot)
        for slot in self._slots:  # windows are never read from (sync pops sequence 0's before evaluating)
            self._logits_idx.pop(slot, None)
        if keep:
            self._fit_windows(len(tokens) - best_n)
        return best_n

    def _kept(self, toks: list[int], moving: int | None = None) -> bool:
        """Some window other than `moving` already holds (nearly) all of `toks`."""
        return any(_common_prefix(self._seq_tokens[s], toks) >= len(toks) - self.WINDOW_MIN_TOKENS
                   for s in self._slots if s != moving and self._seq_tokens[s])

    def _keep(self, slot: int) -> None:
        self._slots.remove(slot)
        self._slots.append(slot)  # most recently used last

    def _fit_windows(self, incoming: int) -> None:
        """Windows and the `incoming` new cells of the prompt may take three quarters of the cache; the least recently
        used windows go first. The last quarter is for decoding (several candidates when sampling); should it still
        run out, `_decode_batch` drops the windows and tries again."""
        while sum(len(self._seq_tokens[s]) for s in self._slots) + incoming > self.n_ctx * 3 // 4:
            victim = next((s for s in self._slots if self._seq_tokens[s]), None)
            if victim is None:
                return
            self.truncate(victim, 0)

    # Micro-batches of background warm-up (`warm`): a request that arrives waits for at most one. Measured with
    # SmolLM2-135M Q4_1 on 2 threads of a 2-core Xeon, 600 tokens: 334 tokens/s in one batch, 299 in batches of 64
    # (214 ms each), 166 in 32, 162 in 16 (99 ms each), 149 in 8.
    WARM_CHUNK = 64

    def warm(self, tokens: Sequence[int], stop: Callable[[], bool] = lambda: False) -> tuple[int, int]:
        """Evaluate `tokens` (a prompt a request will need soon) into sequence 0, ahead of the request, in
        micro-batches of WARM_CHUNK, checking `stop()` before each; sequence 0 then holds the part evaluated, and the
        request evaluates only the rest (`sync` keeps the common prefix). What sequence 0 held goes to a warm window,
        as with any new prompt. The last token is left to the request, which needs the logits after it (and whose
        token healing may leave it out). Returns (reused, evaluated)."""
        tokens = list(tokens)
        if len(tokens) < 2 or len(tokens) >= self.n_ctx:
            return 0, 0
        n = _common_prefix(self._seq_tokens[0], tokens)
        target = len(tokens) - 1
        if n >= target:
            return n, 0
        n = self._keep_common_prefix(tokens, 0, target)
        self._prompt_len, self._prompt_logits = 0, None  # sequence 0 is no longer the last request's prompt
        pos = n
        while pos < target and not stop():
            chunk = tokens[pos : min(target, pos + self.WARM_CHUNK)]
            self._decode_batch([(t, pos + i, 0, i == len(chunk) - 1) for i, t in enumerate(chunk)])
            self._seq_tokens[0].extend(chunk)
            pos += len(chunk)
        return n, pos - n

    def clear(self) -> None:
        """Forget every sequence, warm windows included (the next prompt is evaluated in full)."""
        for seq in range(len(self._seq_tokens)):
            self.truncate(seq, 0)
        # Also the cache's cell layout: after removals alone the next prompt lands in other cells, and attention sums
        # them in another order, so close choices could still depend on what was evaluated before.
        self.L.llama_memory_clear(self.mem, True)
        self._prompt_len, self._prompt_logits = 0, None

    def _drop_windows(self) -> bool:
        dropped = False
        for slot in self._slots:
            if self._seq_tokens[slot]:
                self.truncate(slot, 0)
                dropped = True
        return dropped

    def decode_one(self, token: int, seq: int = 0) -> None:
        pos = len(self._seq_tokens[seq])
        if pos >= self.n_ctx:
            raise ValueError("context full")
        self._decode_batch([(token, pos, seq, True)])
        self._seq_tokens[seq].append(token)

    def decode_parallel(self, tokens_by_seq: dict[int, int]) -> None:
        """Append one token to each of several sequences in a single batch (repeated sampling)."""
        items = []
        for seq, tok in tokens_by_seq.items():
            pos = len(self._seq_tokens[seq])
            if pos >= self.n_ctx:
                raise ValueError("context full")
            items.append((tok, pos, seq, True))
        self._decode_batch(items)
        for seq, tok in tokens_by_seq.items():
            self._seq_tokens[seq].append(tok)

    def copy_seq(self, src: int, dst: int) -> None:
        """Share `src`'s cache with `dst` (no recomputation) so both continue from the same prompt."""
        self.L.llama_memory_seq_rm(self.mem, dst, -1, -1)
        self.L.llama_memory_seq_cp(self.mem, src, dst, -1, -1)
        self._seq_tokens[dst] = list(self._seq_tokens[src])
        if src in self._logits_idx:
            self._logits_idx[dst] = self._logits_idx[src]

    def truncate(self, seq: int, n: int) -> None:
        """Forget everything after the first `n` tokens of `seq`."""
        self.L.llama_memory_seq_rm(self.mem, seq, n, -1)
        del self._seq_tokens[seq][n:]
        self._logits_idx.pop(seq, None)

    def logits(self, seq: int = 0) -> np.ndarray:
        """Logits after the last token of `seq` (a copy: the next decode overwrites llama.cpp's buffer)."""
        idx = self._logits_idx.get(seq)
        if idx is None:
            raise RuntimeError(f"no logits for sequence {seq}")
        ptr = self.L.llama_get_logits_ith(self.ctx, idx)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    # ---------------------------------------------------------------- backend.Backend: one request's evaluation
    def evaluate(self, tokens: Sequence[int]) -> tuple[int, int]:
        """The prompt on sequence 0 (`sync`, warm windows included); its next-token logits are kept for every
        sequence forked from it, so later waves of candidates need no re-evaluation."""
        reused, evaluated = self.sync(tokens, 0)
        self._prompt_len = len(tokens)
        self._prompt_logits = self.logits(0)
        return reused, evaluated

    def fork(self, n: int, max_tokens: int | None = None) -> None:
        if n > self.n_seq:
            raise ValueError(f"{n} sequences requested, the context has {self.n_seq}")
        if len(self._seq_tokens[0]) != self._prompt_len:
            self.truncate(0, self._prompt_len)
        for seq in range(1, n):
            self.copy_seq(0, seq)

    def draw(self, seq: int, sampler: Sampler, allowed: np.ndarray | None = None) -> Draw:
        at_prompt = len(self._seq_tokens[seq]) == self._prompt_len and self._prompt_logits is not None
        return sampler.draw(self._prompt_logits if at_prompt else self.logits(seq), allowed)

    def feed(self, tokens: Mapping[int, int]) -> None:
        if len(tokens) != 1 or not self.measure_verify_cost:
            self.decode_parallel(dict(tokens))
            return
        t0 = time.perf_counter()
        self.decode_parallel(dict(tokens))
        dt = time.perf_counter() - t0
        self._one_token_s = dt if self._one_token_s is None else 0.8 * self._one_token_s + 0.2 * dt

    def verify(self, seq: int, tokens: Sequence[int], sampler: Sampler) -> list[Draw]:
        """Speculative decoding: append `tokens` to sequence `seq` in one batch, with the logits after each of them.
        tokens[0] is the token just drawn (what `feed` would append), tokens[1:] a draft of what may follow it.

        Returns the greedy draws after tokens[0], tokens[1], … (each `sampler.draw` on that position's logits, so with
        the log-probability and entropy of a normal draw) up to the first that differs from the draft, or after the
        last token when the whole draft agrees: every draw but the last re-produces a draft token the sequence keeps;
        the last is the next token, not yet in the sequence (what `draw` would give now). The draft tokens after the
        first disagreement leave the KV cache and `seq_tokens`, and the logits after the last kept token are the
        sequence's current ones. `sampler` must be greedy and the next tokens unrestricted.

        The draft may be cut to fit the context and the batch. Batched evaluation is not bit-identical to one token
        at a time (llama.cpp's CPU flash attention takes another path for a single query with several threads), so
        close choices can flip between the two."""
        n0 = len(self._seq_tokens[seq])
        room = min(self.n_ctx - n0, self._batch_cap)
        if room < 1:
            raise ValueError("context full")
        tokens = [int(t) for t in tokens[:room]]
        t0 = time.perf_counter()
        self._decode_batch([(t, n0 + i, seq, True) for i, t in enumerate(tokens)])
        one = self._one_token_s
        if self.measure_verify_cost and one and len(tokens) > 1:
            extra = (time.perf_counter() - t0 - one) / (len(tokens) - 1) / one
            self.verify_cost = 0.8 * self.verify_cost + 0.2 * min(max(extra, 0.0), 4.0)
        self._seq_tokens[seq].extend(tokens)
        L, draws = self.L, []
        for i in range(len(tokens)):
            # A view of llama.cpp's buffer is enough: nothing decodes before the draw is made.
            x = np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,))
            d = sampler.draw(x)
            draws.append(d)
            if i + 1 == len(tokens) or d.token != tokens[i + 1]:
                break
        keep = len(draws)  # tokens[:keep] stay: the drawn token and the agreeing draft
        if keep < len(tokens):
            L.llama_memory_seq_rm(self.mem, seq, n0 + keep, -1)
            del self._seq_tokens[seq][n0 + keep :]
        self._logits_idx[seq] = keep - 1
        self.verify_batches += 1
        self.drafted_tokens += len(tokens) - 1
        self.accepted_tokens += keep - 1
        return draws

    def score(self, prompt: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """How likely the model finds each continuation of `prompt`: for every continuation c, log P(c[i] | prompt +
        c[:i]) for each of its tokens (float64 arrays, in order). Sequence 0 is made to hold the prompt (what it
        caches is kept, as `sync` keeps it); the continuations go on sequences 0 … n_seq-1 sharing the prompt's cells,
        n_seq at a time, each wave in one batch (in chunks of n_batch) with the logits of every position. The
        prompt's last token is evaluated again with each continuation, for the logits that score its first token.

        Afterwards sequence 0 holds the prompt and the last wave's first continuation, the others are freed; the
        prompt `evaluate` last made ready stays ready when it is this one (the next `fork` cuts sequence 0 back to it).
        Used to rank candidates by the text after the hole (engine.Engine.score_suffix) for models that cannot read it."""
        prompt = [int(t) for t in prompt]
        if not prompt:
            raise ValueError("empty prompt")
        conts = [[int(t) for t in c] for c in continuations]
        longest = max((len(c) for c in conts), default=0)
        if len(prompt) + longest > self.n_ctx:
            raise ValueError(f"prompt and continuation of {len(prompt) + longest} tokens do not fit the context")
        same = self._prompt_len == len(prompt) and self._seq_tokens[0][: len(prompt)] == prompt
        head = len(prompt) - 1
        n = self._keep_common_prefix(prompt, 0, head)
        if n < head:  # (the engine evaluated this prompt just before: nothing to do here)
            self._decode_batch([(t, n + i, 0, False) for i, t in enumerate(prompt[n:head])])
            self._seq_tokens[0].extend(prompt[n:head])
        if not same:
            self._prompt_len, self._prompt_logits = 0, None  # sequence 0 no longer holds the last request's prompt
        out: list[np.ndarray] = [np.zeros(0) for _ in conts]
        L, last = self.L, prompt[-1]
        width = max(1, self.n_seq)
        for w0 in range(0, len(conts), width):
            wave = list(range(w0, min(len(conts), w0 + width)))
            for j in range(1, len(wave)):
                self.copy_seq(0, j)
            items: list[tuple[int, int, int, bool]] = []
            targets: list[tuple[int, int, int]] = []  # per batch item with logits: (continuation, index, token)
            for j, k in enumerate(wave):
                c = conts[k]
                out[k] = np.zeros(len(c))
                for i, t in enumerate([last] + c):
                    want = i < len(c)
                    items.append((t, head + i, j, want))
                    targets.append((k, i, c[i]) if want else (-1, 0, 0))
            n_vocab = self.n_vocab

            def read(start: int, count: int) -> None:
                for i in range(count):
                    k, idx, tok = targets[start + i]
                    if k < 0:
                        continue
                    x = np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, i), shape=(n_vocab,))
                    m = float(x.max())
                    logz = m + float(np.log(np.exp(x - np.float32(m)).sum(dtype=np.float64)))
                    out[k][idx] = float(x[tok]) - logz

            self._decode_batch(items, read)
            for j, k in enumerate(wave):
                self._seq_tokens[j].extend([last] + conts[k])
                self._logits_idx.pop(j, None)
            for j in range(1, len(wave)):
                self.truncate(j, 0)
            if w0 + width < len(conts):
                self.truncate(0, head)
        return out

    def rewind(self) -> None:
        """Sequences 1 … are freed; sequence 0 keeps its candidate's tokens after the prompt, since the person may
        type them next (the next `evaluate` keeps what it shares with them and drops the rest)."""
        for seq in range(1, self.n_seq):
            if self._seq_tokens[seq]:
                self.truncate(seq, 0)


def probe_main() -> None:
    """Child process of hardware.use_extra_buffer_types: load with extra buffer types and decode; a fault kills this
    process, not the caller."""
    try:
        rt = LlamaRuntime(sys.argv[1], n_ctx=256, n_threads=2, use_extra_bufts=True)
    except CodefillError:
        sys.exit(hardware.PROBE_MODEL_BROKEN)
    tokens = rt.tokenize("def add(a, b):\n    return", add_special=True)
    rt.sync(tokens)
    rt.decode_one(int(rt.logits().argmax()))
    sys.exit(0)
