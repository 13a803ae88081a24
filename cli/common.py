"""Shared pieces of the CLI commands: exit codes, model loading with a progress bar, position parsing, engine options."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import typer

from codefill.engine import Engine, EngineConfig
from codefill.engine import errors as E
from codefill.engine.errors import PositionError
from codefill.engine import remote as R
from codefill.quantize import errors as Q

# The exit status of each user-facing failure (listed in the README). A class without an entry of its own exits
# with its nearest ancestor's code (`exit_code` walks the MRO); 2 is click's usage error, 130 an interrupt.
EXIT_CODES: dict[type, int] = {
    E.CodefillError: 1,
    E.ModelNotFoundError: 3,
    E.ModelUnreadableError: 4,
    E.ModelFormatError: 5,
    E.ModelLoadError: 6,
    E.InputFileError: 7,
    E.BinaryFileError: 8,
    E.EmptyFileError: 9,
    E.PositionError: 10,
    E.DownloadError: 11,
    E.ConfigError: 12,
    E.DocumentTooLargeError: 13,
    R.ServerError: 14,
    R.ServerUnreachableError: 15,
    R.ServerAuthError: 16,
    Q.QuantizeError: 20,
    Q.UnsupportedArchitectureError: 21,
    Q.MissingFilesError: 22,
    Q.DiskSpaceError: 23,
    Q.CalibrationError: 24,
    Q.TargetSizeError: 25,
}


def exit_code(error: BaseException) -> int:
    """The exit status for `error`: its class's code, else the nearest base class's, else 1."""
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def parse_location(spec: str) -> tuple[str, int, int]:
    """`path:LINE:COL` or `path:LINE` (1-based, like compiler messages) → (path, line0, col0)."""
    parts = spec.rsplit(":", 2)
    try:
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            path, line, col = parts[0], int(parts[1]), int(parts[2])
        elif len(parts) >= 2 and parts[-1].isdigit():
            path, line, col = spec.rsplit(":", 1)[0], int(parts[-1]), -1
        else:
            raise ValueError
    except ValueError:
        raise typer.BadParameter(f"expected FILE:LINE[:COL] (1-based), got {spec!r}") from None
    if line < 1 or col == 0 or col < -1:
        raise PositionError(f"positions are 1-based: {spec!r}")
    return path, line - 1, (col - 1 if col > 0 else -1)


@contextmanager
def progress_bar(description: str, enabled: bool | None = None) -> Iterator[Callable[[float], None]]:
    """A transient progress bar on stderr (only on a terminal); yields a callback taking a fraction 0..1."""
    if enabled is None:
        enabled = sys.stderr.isatty() and not os.environ.get("CODEFILL_NO_PROGRESS")
    if not enabled:
        yield lambda _f: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True,
    ) as prog:
        task = prog.add_task(description, total=1.0)
        yield lambda f: prog.update(task, completed=f)


def log_progress(description: str, every_s: float = 60.0, step: float = 0.05,
                 write: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> Callable[[int, int], None]:
    """A `progress(done, total)` callback for a stderr that is no terminal (a log file, CI): one plain line per 5%
    of the work or per minute, whichever comes first, and one at the end, with the elapsed and remaining time."""
    write = write or (lambda line: print(line, file=sys.stderr, flush=True))
    start = clock()
    state = {"at": start, "bucket": -1}  # the first call is shown: the work has started

    def update(done: int, total: int) -> None:
        now = clock()
        frac = done / total if total else 1.0
        bucket = int(frac / step + 1e-9)
        if done < total and bucket <= state["bucket"] and now - state["at"] < every_s:
            return
        state["at"], state["bucket"] = now, bucket
        elapsed = now - start
        left = f", ~{_clock(elapsed / frac - elapsed)} left" if 0 < frac < 1 else ""
        write(f"{description}: {done}/{total} ({frac:.0%}) {_clock(elapsed)} elapsed{left}")

    return update


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds + 0.5), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def server_settings(server: str | None, server_model: str | None = None, api_key: str | None = None,
                    ) -> "R.ServerSettings | None":
    """--server / --server-model / --api-key, else CODEFILL_SERVER … , else the config file; None: in-process."""
    from codefill.engine.models import read_config

    return R.ServerSettings.resolve(server, server_model, api_key, config=read_config())


def load_engine(
    model: str | None,
    *,
    threads: int | None = None,
    ctx: int | None = None,
    n_seq: int | None = None,
    quiet: bool = False,
    server: "R.ServerSettings | None" = None,
    **overrides,
) -> Engine:
    """The in-process model, or with `server` an engine over that inference server (`model`, if given, is the
    served model's GGUF, read for its vocabulary only)."""
    config = EngineConfig().with_overrides(n_threads=threads, n_ctx=ctx, n_seq=n_seq, **overrides)
    with progress_bar("loading model", enabled=False if quiet else None) as cb:
        if server is not None:
            return Engine.connect(server, config, model=model, progress=cb)
        return Engine.load(config, progress=cb, model=model)


SERVER_HELP = ("Complete on this inference server instead of in-process: llama-server (http://host:8080) or "
               "OpenAI-compatible (http://host:8000/v1). Also CODEFILL_SERVER or `server` in the config file.")
SERVER_MODEL_HELP = "Model name for an OpenAI-compatible server (default: the first it lists)."
API_KEY_HELP = "Bearer key for the server (better: CODEFILL_API_KEY or `api_key` in the config file; never printed)."
