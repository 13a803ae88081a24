"""A llama.cpp context for measuring a model: logits at every position of a chunk, and an optional eval callback.

`codefill.engine.llama.LlamaRuntime` only keeps the last token's logits and cannot take `cb_eval`, so the quantizer
has its own small loader. Model loading goes through the same checks and the same AMX decision
(`codefill.engine.hardware.use_extra_buffer_types`) as the engine.
"""

from __future__ import annotations

import ctypes
import time
from typing import Callable, Sequence

import numpy as np

from codefill.engine.errors import ModelLoadError
from codefill.engine.hardware import use_extra_buffer_types
from codefill.engine.llama import _init_backend, check_model_file, default_threads, last_llama_errors


class EvalModel:
    """One model, one sequence, contexts of `n_ctx` tokens evaluated whole (every position's logits)."""

    def __init__(
        self,
        path: str,
        *,
        n_ctx: int = 512,
        n_threads: int | None = None,
        cb_eval=None,
        use_mmap: bool = True,
        extra_bufts: bool | None = None,
        progress: Callable[[float], None] | None = None,
    ):
        import llama_cpp as L

        check_model_file(path)
        _init_backend()
        self.L = L
        self.path = path
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = 0
        if not use_mmap:  # writable weights (the sensitivity probes edit them in place)
            if hasattr(L, "LLAMA_LOAD_MODE_NONE") and any(f[0] == "load_mode" for f in type(mp)._fields_):
                mp.load_mode = L.LLAMA_LOAD_MODE_NONE
            else:  # older bindings
                mp.use_mmap = False
        mp.use_extra_bufts = bool(use_extra_buffer_types(path)) if extra_bufts is None else bool(extra_bufts)
        if progress is not None:
            @L.llama_progress_callback
            def _p(fraction, _user):  # pragma: no cover - called from C
                try:
                    progress(float(fraction))
                except Exception:
                    pass
                return True

            self._progress_cb = _p
            mp.progress_callback = _p
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            raise ModelLoadError(f"llama.cpp could not load {path}: {last_llama_errors()}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_ctx
        cp.n_ubatch = n_ctx
        cp.n_seq_max = 1
        self.n_threads = n_threads or default_threads()
        cp.n_threads = self.n_threads
        cp.n_threads_batch = self.n_threads
        cp.no_perf = True
        if cb_eval is not None:
            self._cb_eval = cb_eval  # C keeps the pointer: keep the object alive
            cp.cb_eval = cb_eval
            cp.cb_eval_user_data = None
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            L.llama_model_free(self.model)
            self.model = None
            raise ModelLoadError(f"llama.cpp could not create a context for {path}: {last_llama_errors()}")
        self.n_ctx = L.llama_n_ctx(self.ctx)
        self.mem = L.llama_get_memory(self.ctx)
        self._batch = L.llama_batch_init(self.n_ctx, 0, 1)

    def close(self) -> None:
        L = self.L
        if getattr(self, "_batch", None) is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "ctx", None):
            L.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            L.llama_model_free(self.model)
            self.model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):  # pragma: no cover
        try:
            self.close()
        except Exception:
            pass

    @property
    def add_bos(self) -> bool:
        return bool(self.L.llama_vocab_get_add_bos(self.vocab))

    @property
    def bos(self) -> int:
        return int(self.L.llama_vocab_bos(self.vocab))

    def tokenize(self, text: str, add_special: bool = False) -> list[int]:
        data = text.encode("utf-8")
        n_max = len(data) + 16
        arr = (self.L.llama_token * n_max)()
        n = self.L.llama_tokenize(self.vocab, data, len(data), arr, n_max, add_special, False)
        if n < 0:
            arr = (self.L.llama_token * (-n))()
            n = self.L.llama_tokenize(self.vocab, data, len(data), arr, -n, add_special, False)
        return list(arr[:n])

    def detokenize(self, tokens: Sequence[int]) -> str:
        out = []
        buf = ctypes.create_string_buffer(256)
        for t in tokens:
            n = self.L.llama_token_to_piece(self.vocab, t, buf, len(buf), 0, False)
            out.append(buf.raw[: max(n, 0)])
        return b"".join(out).decode("utf-8", errors="replace")

    def is_eog(self, tok: int) -> bool:
        return bool(self.L.llama_vocab_is_eog(self.vocab, tok))

    def _decode(self, tokens: Sequence[int], start_pos: int, want_all: bool, first: int = 0) -> None:
        L, b = self.L, self._batch
        b.n_tokens = len(tokens)
        for i, t in enumerate(tokens):
            b.token[i] = t
            b.pos[i] = start_pos + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = (want_all and i >= first) or i == len(tokens) - 1
        rc = L.llama_decode(self.ctx, b)
        if rc != 0:
            raise ModelLoadError(f"llama_decode failed ({rc})")

    def run(self, tokens: Sequence[int], all_logits: bool = True) -> None:
        """Fresh context, evaluate `tokens` without reading the logits (for the eval callback's sake)."""
        if len(tokens) > self.n_ctx:
            raise ValueError(f"{len(tokens)} tokens do not fit n_ctx={self.n_ctx}")
        self.L.llama_memory_clear(self.mem, True)
        self._decode(tokens, 0, all_logits)

    def eval_logits(self, tokens: Sequence[int], first: int = 0) -> np.ndarray:
        """Fresh context, evaluate `tokens` (≤ n_ctx) in one batch; logits at positions first..n-1 (float32)."""
        if len(tokens) > self.n_ctx:
            raise ValueError(f"{len(tokens)} tokens do not fit n_ctx={self.n_ctx}")
        self.L.llama_memory_clear(self.mem, True)
        self._decode(tokens, 0, True, first)  # logits only where they are read: the output layer is costly
        ptr = self.L.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(len(tokens) - first, self.n_vocab)).copy()

    def generate(self, prompt: Sequence[int], max_tokens: int, stop: Callable[[list[int]], bool] | None = None
                 ) -> tuple[list[int], float, float]:
        """Greedy continuation. Returns (tokens, prompt seconds, generation seconds)."""
        L = self.L
        L.llama_memory_clear(self.mem, True)
        prompt = list(prompt)[-(self.n_ctx - max_tokens - 1):]
        t0 = time.perf_counter()
        self._decode(prompt, 0, False)
        t1 = time.perf_counter()
        out: list[int] = []
        pos = len(prompt)
        for _ in range(max_tokens):
            ptr = L.llama_get_logits_ith(self.ctx, -1)
            logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
            tok = int(np.argmax(logits))
            if self.is_eog(tok):
                break
            out.append(tok)
            if stop is not None and stop(out):
                break
            self._decode([tok], pos, True)
            pos += 1
        return out, t1 - t0, time.perf_counter() - t1
