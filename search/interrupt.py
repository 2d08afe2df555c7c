"""Ctrl-C and SIGTERM stop a search the way Tune stops one: state saved, `--resume` continues.

Tune stops its loop on SIGINT (and SIGUSR1), writes its snapshot one last time and returns
from `fit()`: the running trials stay RUNNING in that snapshot, with their checkpoints, and
the searcher's state is saved with it. A cluster's scheduler sends SIGTERM instead, which
Tune leaves to Python (the process dies between snapshots). `Interrupts` takes both signals
for the driver while a search runs and hands the first one to Tune's own stop handler, so
both end the same way; the driver then must not fail the running trials in Optuna nor prune
checkpoints the snapshot names (`search.tune`). Before Tune's handler is in place, or on a
second signal (a person who does not want to wait), it raises KeyboardInterrupt: every
checkpoint is kept while a search runs (`search.checkpoints`), so `--resume` continues from
there too. No Ray here.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
TUNE_STOP = getattr(signal, "SIGUSR1", None)  # Tune's other stop signal (not on Windows)


class Interrupted(Exception):
    """The search stopped on a signal before its budget was spent; `--resume` continues."""

    def __init__(self, signum: int, plan: Any, finished: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.plan = plan
        self.finished = finished  # trials (members) with a row in trials.csv

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention for a process ended by a signal


class Interrupts:
    """The driver's SIGINT and SIGTERM handler while a search runs (a context manager).
    `tuning()` marks the span in which Tune's own stop handler may be present."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}
        self._before_tune: Any = None
        self._tuning = False

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():  # signals: main thread only
            for signum in SIGNALS:
                self._old[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)

    def tuning(self, on: bool) -> None:
        self._tuning = on
        if on and TUNE_STOP is not None:
            self._before_tune = signal.getsignal(TUNE_STOP)  # a handler Tune installs differs

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        stop = signal.getsignal(TUNE_STOP) if TUNE_STOP is not None else None
        if first and self._tuning and callable(stop) and stop is not self._before_tune:
            stop(TUNE_STOP, frame)  # Tune ends its loop, saves its state and returns
            return
        raise KeyboardInterrupt
