"""Noticing Ctrl-C and SIGTERM across Dagster's in-process runs.

Why a plain Ctrl-C did not stop `loyalty backfill` or the test suite: while a run executes in
process, Dagster replaces the SIGINT handler (and maps SIGTERM onto it) with one that turns the
signal into a failed step (`DagsterExecutionInterruptedError`); the run ends as a failure and the
caller goes on with the next date, or pytest with the next test. Python writes the number of every
signal it handles to the "wakeup fd", whichever Python handler is installed, so reading that pipe
after each run tells whether the user asked to stop.
"""

from __future__ import annotations

import os
import signal


class InterruptWatch:
    """Records SIGINT/SIGTERM from now on; `received()` says (once) whether one arrived."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        try:
            signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
            self.active = True
        except ValueError:  # not the main thread: nothing to watch
            self.active = False
        if self.active:
            # Until Dagster's first run, SIGTERM has no Python handler (it kills without cleanup):
            # treat it as Ctrl-C, as Dagster itself does while a run executes.
            signal.signal(signal.SIGTERM, signal.default_int_handler)

    def received(self) -> bool:
        if not self.active:
            return False
        seen = False
        while True:
            try:
                data = os.read(self._read, 512)
            except BlockingIOError:
                return seen
            if not data:
                return seen
            seen = seen or any(b in (signal.SIGINT, signal.SIGTERM) for b in data)
