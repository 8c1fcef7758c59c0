"""Stopping a run cleanly: SIGINT/SIGTERM become a request that the trainer honours at a step boundary."""

from __future__ import annotations

import signal
from typing import Any


class StopRequest:
    """Set by SIGINT/SIGTERM; the trainer stops at the next step boundary and writes a checkpoint."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = 0) -> None:
        self.signum = signum

    def install(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            if self.signum is not None:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self.request(signum)

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
