"""codefill.engine: context → prompt → decode → post-process → cache.

    from codefill.engine import Engine, CompletionRequest
    engine = Engine.load()                       # the embedded default model
    c = engine.complete(CompletionRequest(text=src, line=41, character=16, path="app.py"))
    print(c.text, c.stop_reason, c.timings.total_ms)
"""

from .config import BudgetConfig, DecodeConfig, EngineConfig
from .context import CompletionContext, Position, Range, Snippet, build_context, read_source_file
from .engine import Engine, Prepared, apply_completion
from .errors import CodefillError
from .types import DEFAULT, Candidate, Completion, CompletionRequest, SampleSet, StopReason, Timings

__all__ = [
    "BudgetConfig", "DecodeConfig", "EngineConfig", "CompletionContext", "Position", "Range", "Snippet",
    "build_context", "read_source_file", "Engine", "Prepared", "apply_completion", "CodefillError", "Completion",
    "CompletionRequest", "Timings", "Candidate", "SampleSet", "StopReason", "DEFAULT",
]
