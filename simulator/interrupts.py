"""Ctrl-C that native code cannot hide.

Python raises ``KeyboardInterrupt`` at whatever bytecode runs when SIGINT lands. When that is
a callback inside a native library (a pydantic serializer, a database driver), the library
may turn it into an error of its own (``PydanticSerializationError: Error calling function
`<lambda>`: KeyboardInterrupt``), and a run interrupted during set-up would then end as a
failure with exit 1 instead of an interruption with exit 130.

Core objects:
    install, reset: make SIGINT remember that it came before it raises ``KeyboardInterrupt``.
    was_interrupted: whether an exception should be read as the interruption it hides.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_seen = threading.Event()


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _seen.set()
    raise KeyboardInterrupt


def install() -> None:
    """Handle SIGINT by noting it, then raising ``KeyboardInterrupt`` as Python's default
    handler does. Only from the main thread, and only where SIGINT has Python's default
    handler (a process that ignores it, or a caller with its own, keeps that)."""
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
        signal.signal(signal.SIGINT, _on_sigint)


def reset() -> None:
    """Forget earlier interruptions (a command run again in the same process)."""
    _seen.clear()


def note() -> None:
    """Remember an interruption that came another way (SIGTERM read as Ctrl-C)."""
    _seen.set()


def was_interrupted(error: BaseException) -> bool:
    """Whether ``error`` is an interruption: a ``KeyboardInterrupt``, or any error raised
    after SIGINT came (a library that wrapped the ``KeyboardInterrupt``)."""
    return isinstance(error, KeyboardInterrupt) or _seen.is_set()
