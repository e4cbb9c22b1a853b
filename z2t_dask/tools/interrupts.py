"""Interrupts of a ``z2t`` command: SIGTERM as :class:`Terminated`, and no interrupt lost in a finaliser.

Ctrl-C raises ``KeyboardInterrupt`` in the main thread; :func:`sigterm_interrupts` makes SIGTERM
(``timeout``, ``kill``, a SLURM walltime) do the same, so atomic outputs clean up alike, and
delivers again an interrupt that Python swallowed in a weakref callback or a ``__del__``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["EXIT_TERMINATED", "Terminated", "sigterm_interrupts"]


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``kill``, a SLURM walltime) as an interrupt: cleaned up like Ctrl-C, exit 143."""


#: Exit status after SIGTERM (128 + 15, as a shell reports a process killed by it).
EXIT_TERMINATED = 128 + signal.SIGTERM


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the command runs, SIGTERM raises :class:`Terminated` in the main thread.

    Atomic outputs then remove their temporaries as on Ctrl-C. Only the first SIGTERM raises: a second
    one during the clean-up is ignored. SIGXFSZ is ignored too (as Python does at start-up), so a write
    beyond the file-size limit fails with EFBIG ("file too large") instead of killing the process.

    An interrupt (SIGTERM or Ctrl-C) that Python runs inside a weakref callback or a ``__del__``
    is swallowed there ("Exception ignored in ..."), and the command would carry on: while the
    command runs, such an interrupt is delivered again (the same signal, sent to this process 20 ms
    later from a timer thread), so it surfaces in the command's own code.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if fired:
            return
        fired.append(signum)
        raise Terminated("terminated (SIGTERM)")

    previous_hook = sys.unraisablehook
    timers: list[threading.Timer] = []

    def redeliver(unraisable: Any) -> None:
        exc = unraisable.exc_value
        if not isinstance(exc, KeyboardInterrupt):
            previous_hook(unraisable)
            return
        if isinstance(exc, Terminated):
            fired.clear()  # it never reached the command: raise it again
        # a moment later, from another thread: a signal sent now would run its handler inside this
        # hook, and be swallowed again
        sig = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        timer = threading.Timer(0.02, os.kill, args=(os.getpid(), sig))
        timer.daemon = True
        timers.append(timer)
        timer.start()

    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    previous = signal.signal(signal.SIGTERM, handler)
    sys.unraisablehook = redeliver
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for timer in timers:  # the command is over: no signal after it
            timer.cancel()
        signal.signal(signal.SIGTERM, previous)
