"""Preemption: SIGTERM (what clusters send) and SIGINT (Ctrl-C) ask the loop to save and stop, instead of
killing it mid-step or mid-save."""

from __future__ import annotations

import signal
import threading

SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
EXIT_CODES = {"SIGTERM": 143, "SIGINT": 130}  # 128 + the signal number, as a shell reports them


class StopSignals:
    """While active, the first SIGTERM or SIGINT only records its name in ``received``; the loop finishes its
    step, writes a checkpoint and stops. Outside the main thread (where Python cannot take signals) it does
    nothing."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def _handle(self, number, frame) -> None:
        if self.received is None:
            self.received = signal.Signals(number).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS.values():
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
