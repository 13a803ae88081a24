"""The seam between the completion pipeline and whatever evaluates tokens.

The pipeline (context → prompt → decode loop → post-process → cache, in engine.py and decode.py) talks to a backend
through this protocol only. `LlamaRuntime` (llama.cpp in-process, with KV reuse and warm windows behind `evaluate`)
is the first implementation. A remote inference server is meant to be a second one without touching context, prompt,
stop rules, filters, caches or the gate: it tokenizes with the model's vocabulary (or the server's /tokenize),
`evaluate` sends the token-id prompt, `draw` returns the next token the server streamed for a sequence (with its
log-probability), `feed` has nothing to do (the server appended the token itself), `rewind` closes the streams, which
is how a cancelled or superseded request stops decoding on the server.

One request at a time: the engine holds its lock around evaluate … rewind.

Optional capabilities, found with getattr (a backend without them is still a backend): `warm(tokens, stop)` (evaluate
a prompt ahead of time), `verify(seq, tokens, sampler)` (speculative decoding), `score(prompt, continuations)`
(the log-probability of each token of given continuations of a prompt: suffix ranking for prefix-only models,
Engine.score_suffix). LlamaRuntime has all three; the remote backend none (see remote.py), so on a server
`--select suffix` ranks as `auto` does and the language server ranks alternatives as it does for FIM models.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from .fim import Vocab
from .sampler import Draw, Sampler


@runtime_checkable
class Backend(Vocab, Protocol):
    """Vocabulary (fim.Vocab: tokenize, pieces, special-token ids, metadata) plus evaluation."""

    path: str  # the model file (or the server's model name)
    n_ctx: int  # tokens a sequence can hold, prompt and completion together
    n_seq: int  # sequences that can decode together from one evaluated prompt
    n_vocab: int
    n_threads: int
    accelerated: bool  # evaluation runs on a GPU (or a server): prompts and parallel candidates are cheap

    def is_eog(self, token: int) -> bool: ...
    def detokenize(self, tokens: Sequence[int], special: bool = False) -> str: ...
    def describe(self) -> str: ...

    def evaluate(self, tokens: Sequence[int]) -> tuple[int, int]:
        """Make sequence 0 hold exactly `tokens` (the prompt), reusing what is cached; its next-token distribution is
        then ready. Returns (tokens reused, tokens evaluated)."""
        ...

    def fork(self, n: int, max_tokens: int | None = None) -> None:
        """Sequences 1 … n-1 continue from sequence 0's prompt too (n ≤ n_seq), sharing it. `max_tokens`: the most
        tokens any of them will be asked for (a server is told, so it never decodes past it)."""
        ...

    def draw(self, seq: int, sampler: Sampler, allowed: np.ndarray | None = None) -> Draw:
        """The next token of sequence `seq` (`allowed`: the ids it is restricted to; None: any)."""
        ...

    def feed(self, tokens: Mapping[int, int]) -> None:
        """Append one token to each of several sequences (one batch)."""
        ...

    def rewind(self) -> None:
        """End the candidates: sequences 1 … are freed; sequence 0 keeps the prompt (and may keep its candidate's
        tokens) for the next request, so typing on at the same place reuses it."""
        ...

    def clear(self) -> None:
        """Forget every cached prompt (the next one is evaluated in full)."""
        ...

    def close(self) -> None: ...
