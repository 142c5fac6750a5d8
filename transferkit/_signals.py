"""SIGTERM as an exception, so a stopped job saves its work first.

Batch schedulers and containers stop a job with SIGTERM, then SIGKILL after a grace
period. Python's default for SIGTERM is instant death: batches computed but not yet
written are lost. Inside :func:`sigterm_raises`, SIGTERM raises
:class:`~transferkit.exceptions.Terminated` in the main thread instead, so ``finally``
blocks run (the feature cache writes every batch it computed) and the process then
exits with code 143, as a terminated process does.

Only a default disposition is replaced: an application that handles SIGTERM itself
keeps its handler, and code running outside the main thread (where Python cannot set
signal handlers) is left as it is.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from .exceptions import Terminated

__all__ = ["sigterm_raises"]


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """For the block, SIGTERM raises :class:`Terminated` (if nothing else handles it)."""
    sigterm = getattr(signal, "SIGTERM", None)
    if sigterm is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(sigterm)
    if previous is not signal.SIG_DFL:
        yield  # the application (or the CLI) handles SIGTERM itself
        return
    signal.signal(sigterm, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(sigterm, previous)
