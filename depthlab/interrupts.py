"""Interrupts (Ctrl-C, a scheduler's SIGTERM) that never land inside a tracking write.

A sweep stops on SIGINT or SIGTERM by raising :class:`KeyboardInterrupt`, so the
run in flight is marked FAILED and the sweep run KILLED. Python raises that
exception between any two bytecodes, which is safe inside numerical code but not
inside an MLflow call: an exception in the middle of a SQLAlchemy session can
leave the SQLite database write-locked by a connection that the traceback keeps
alive, and every later write (marking the run FAILED, the sweep KILLED) then
waits out SQLite's busy timeout (20 s each in MLflow) before it fails.

Code that writes to the tracking store runs inside :func:`deferred`: a signal
that arrives there is remembered and raised when the outermost deferred block
ends. A second signal while one is pending raises at once, so a hung write can
still be interrupted by pressing Ctrl-C twice.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import ParamSpec, TypeVar

SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop a sweep."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


class _State:
    depth = 0
    pending: int | None = None
    received: int | None = None


_state = _State()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _state.received = signum
    if _state.depth > 0 and _state.pending is None:
        _state.pending = signum
        return
    _state.pending = None
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def install() -> None:
    """Stop on SIGINT and SIGTERM with :class:`KeyboardInterrupt`, deferring
    the exception out of :func:`deferred` blocks.

    Call from the main thread (Python runs signal handlers there only).
    """
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)


def installed() -> bool:
    """True if :func:`install` set the handlers now in place."""
    return all(signal.getsignal(s) is _on_signal for s in SIGNALS)


def pending() -> int | None:
    """The signal received inside a deferred block and not yet raised, if any."""
    return _state.pending


def received() -> int | None:
    """The last SIGINT/SIGTERM the handler saw, if any."""
    return _state.received


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold back SIGINT/SIGTERM until the block ends, then raise it.

    In threads other than the main thread this does nothing: signals are
    delivered to the main thread only.

    Raises
    ------
    KeyboardInterrupt
        When the outermost block ends with a signal pending.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0 and _state.pending is not None:
            signum = _state.pending
            _state.pending = None
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def deferring(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorator: run ``function`` inside :func:`deferred`."""

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with deferred():
            return function(*args, **kwargs)

    return wrapper
