"""The newest background job, debounced, run on the thread every model call runs on (`Engine.warm`,
`Engine.precompute`; used by the language server's lsp/warmup.py and the person benchmark, eval/person.py).

One daemon thread waits out each job's delay (a newer job replaces a pending one), then hands the job to `submit`
— the caller's single model thread: llama.cpp's OpenMP workers belong to the thread that calls it, and calls from a
second thread made every token about 2x slower on two cores (both thread teams spinning). A newer job that
`preempt`s sets the running one's cancel event (the person went elsewhere), and so does `interrupt` (a request is
about to be queued: a job queued ahead of it gives way at once).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import CancelledError, Future
from typing import Callable

log = logging.getLogger(__name__)

Job = Callable[[threading.Event], int]  # job(cancel) -> tokens it evaluated or decoded


class NewestJob:
    """Debounces background jobs and runs the newest through `submit`. `stats` counts, per kind, `{kind}_runs` and
    `{kind}_tokens`; subclasses may refuse a job just before it runs (`admit`) and see what it did (`ran`)."""

    def __init__(self, submit: Callable[..., Future], name: str) -> None:
        self._submit = submit
        self._name = name
        self._cv = threading.Condition()
        self._pending: tuple[float, str, Job] | None = None
        self._running: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self.stats: collections.Counter = collections.Counter()

    def schedule(self, job: Job, delay_s: float, preempt: bool, kind: str = "job") -> None:
        """Run `job(cancel)` after `delay_s`, unless a newer job comes first."""
        with self._cv:
            if self._closed:
                return
            self._pending = (time.monotonic() + delay_s, kind, job)
            if preempt and self._running is not None:
                self._running.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cv.notify()

    def interrupt(self) -> None:
        """A request is coming: the job on (or queued for) the model thread stops at its next micro-batch or token."""
        with self._cv:
            if self._running is not None:
                self._running.set()

    def close(self, wait_s: float = 0.0) -> None:
        with self._cv:
            self._closed, self._pending = True, None
            if self._running is not None:
                self._running.set()
            self._cv.notify()
            thread = self._thread
        if wait_s > 0 and thread is not None:
            thread.join(wait_s)

    @property
    def closed(self) -> bool:
        return self._closed

    def admit(self, kind: str, cancel: threading.Event) -> bool:
        return True

    def ran(self, kind: str, tokens: int) -> None:
        pass

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and (self._pending is None or self._pending[0] > time.monotonic()):
                    self._cv.wait(None if self._pending is None else max(0.0, self._pending[0] - time.monotonic()))
                if self._closed:
                    return
                _, kind, job = self._pending
                self._pending = None
                cancel = self._running = threading.Event()
            try:
                if not self.admit(kind, cancel):
                    continue
                try:
                    fut = self._submit(job, cancel)
                except RuntimeError:  # the model thread shut down (the process is exiting)
                    return
                try:
                    n = fut.result()
                except CancelledError:  # (the same, with the job still queued)
                    return
                self.stats[f"{kind}_runs"] += 1
                self.stats[f"{kind}_tokens"] += n
                self.ran(kind, n)
            except Exception:  # background work must never take its process down
                log.exception("background %s failed", kind)
            finally:
                with self._cv:
                    self._running = None
                    self._cv.notify_all()
