"""The model, loaded in the background: `window/workDoneProgress/create` and `$/progress` while it loads,
`window/showMessage` plus `window/logMessage` (and the Python log) when it cannot load.

All model work runs on the server's single worker thread (the engine serialises calls anyway), so a load queued
before a completion request is finished — or has failed — by the time that request runs. The server keeps running
after a failure: requests get empty results, and a settings change with another model tries again.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING

from lsprotocol import types

from codefill.engine import CodefillError, Engine, EngineConfig
from codefill.engine.models import read_config
from codefill.engine.remote import ServerError, ServerSettings

if TYPE_CHECKING:
    from .server import CodefillLanguageServer
    from .settings import Settings

log = logging.getLogger(__name__)
_tokens = itertools.count(1)
SEQUENCES = 8
RECONNECT_S = 5.0  # a server that was down is tried again on a request at most this often


class ModelHolder:
    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.error: str | None = None
        self.key: tuple | None = None
        self.loaded = threading.Event()  # set once a load finished (ok or not)
        self._retry: tuple[float, "Settings"] | None = None  # (when, settings): a server to connect to again

    def ensure(self, ls: "CodefillLanguageServer", settings: "Settings") -> None:
        """Queue a load on the worker if the model settings changed (call from the event loop)."""
        key = settings.model_key()
        if key == self.key:
            return
        self.key = key
        self.loaded.clear()
        supports_progress = bool(
            ls.client_capabilities and ls.client_capabilities.window
            and ls.client_capabilities.window.work_done_progress
        )
        token = f"codefill-load-{next(_tokens)}"
        created = threading.Event()
        accepted = [False]
        if supports_progress:
            def on_created(fut) -> None:
                accepted[0] = not fut.cancelled() and fut.exception() is None
                created.set()

            try:
                fut = ls.protocol.send_request(
                    types.WINDOW_WORK_DONE_PROGRESS_CREATE, types.WorkDoneProgressCreateParams(token=token))
                fut.add_done_callback(on_created)
            except Exception:  # the client cannot take it: load without progress
                log.debug("cannot create a progress token", exc_info=True)
                supports_progress = False
        ls.worker.submit(self._load, ls, settings, token, created if supports_progress else None, accepted)

    def _load(self, ls: "CodefillLanguageServer", settings: "Settings", token: str, created: threading.Event | None,
              accepted: list[bool]):
        """On the worker thread."""
        if created is not None and not (created.wait(5.0) and accepted[0]):
            created = None  # no (good) answer to window/workDoneProgress/create: no progress
        name = settings.model or "the default model"
        if created is not None:
            ls.call_in_loop(ls.work_done_progress.begin, token, types.WorkDoneProgressBegin(
                title="codefill", message=f"loading {name}", percentage=0, cancellable=False))
        last = [-1]

        def progress(fraction: float) -> None:
            pct = max(0, min(100, int(fraction * 100)))
            if created is not None and pct >= last[0] + 5:
                last[0] = pct
                ls.call_in_loop(ls.work_done_progress.report, token,
                                types.WorkDoneProgressReport(message=f"loading {name}", percentage=pct))

        old, self.engine = self.engine, None
        if old is not None:
            old.close()
        self._retry = None
        try:
            self.engine = self._open(settings, progress)
            self.error = None
            log.info("loaded %s", self.engine.model_path)
            ls.call_in_loop(ls.log_to_client, types.MessageType.Info, f"codefill: loaded {self.engine.model_path}")
            done = f"loaded {self.engine.model_name}"
        except ServerError as exc:  # the server may come back: connect again on a later request
            self._retry = (time.monotonic() + RECONNECT_S, settings)
            self._failed(ls, str(exc))
            done = "server not reachable"
        except CodefillError as exc:
            self._failed(ls, str(exc))
            done = "model not loaded"
        except Exception as exc:  # a bug, but the server keeps running
            log.exception("loading the model failed")
            self._failed(ls, f"{type(exc).__name__}: {exc}")
            done = "model not loaded"
        finally:
            self.loaded.set()
            if created is not None:
                ls.call_in_loop(ls.work_done_progress.end, token, types.WorkDoneProgressEnd(message=done))

    @staticmethod
    def _open(settings: "Settings", progress=None) -> Engine:
        # Several sequences: alternatives and adaptive samples decode together from one prompt (they share the
        # KV cells of the prompt, so this costs no memory; on a server they are concurrent streams).
        config = EngineConfig().with_overrides(n_threads=settings.threads, n_ctx=settings.context_size,
                                               n_seq=SEQUENCES, prefix_tokens=settings.prefix_tokens,
                                               windows=settings.warm_windows)
        server = _server_settings(settings)
        if server is not None:
            return Engine.connect(server, config, model=settings.model, progress=progress)
        return Engine.load(config, progress=progress, model=settings.model)

    def reconnect(self, ls: "CodefillLanguageServer") -> Engine | None:
        """On the worker, for a request while the server was down at load time: try again (at most every few
        seconds, quietly: the user was told once)."""
        if self.engine is not None or self._retry is None or time.monotonic() < self._retry[0]:
            return self.engine
        settings = self._retry[1]
        try:
            self.engine = self._open(settings)
        except ServerError as exc:
            self._retry = (time.monotonic() + RECONNECT_S, settings)
            log.info("the server is still not reachable: %s", exc)
            return None
        except CodefillError as exc:
            self._retry = None
            self._failed(ls, str(exc))
            return None
        self._retry, self.error = None, None
        text = f"codefill: connected to {self.engine.model_path}"
        log.info("%s", text)
        ls.call_in_loop(ls.show_to_client, types.MessageType.Info, text)
        return self.engine

    def _failed(self, ls: "CodefillLanguageServer", message: str) -> None:
        self.engine = None
        self.error = message
        text = f"codefill: cannot load the model: {message}"
        log.error("%s", text)
        ls.call_in_loop(ls.show_to_client, types.MessageType.Error, text)
        ls.call_in_loop(ls.log_to_client, types.MessageType.Error, text)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None


def _server_settings(settings: "Settings") -> ServerSettings | None:
    """The server from the editor's settings, else CODEFILL_SERVER / the config file (None: in-process)."""
    try:
        config = read_config()
    except CodefillError:
        config = {}
    return ServerSettings.resolve(settings.server, settings.server_model, settings.api_key, config=config)
