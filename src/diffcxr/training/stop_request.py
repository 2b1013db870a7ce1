"""Ctrl-C and SIGTERM during training: finish the step, write a checkpoint, stop with one line.

While a stage's step loop runs (:func:`stop_requests` wraps the stage, its
:class:`~diffcxr.training.session.Session` arms the handler when the loop starts), SIGINT and SIGTERM (what a batch
scheduler sends before it kills a job) only set a flag. The session reads it after each optimizer step, writes a
checkpoint there and raises :class:`TrainingInterrupted`, so ``--resume`` continues exactly where the run stopped
instead of at the last periodic checkpoint. The same signal sent again, or one before the loop starts (model
set-up, latent caching), stops at once with ``KeyboardInterrupt``, losing only the steps since the last checkpoint;
another signal meanwhile is ignored (under ``accelerate launch`` a worker can get both, the terminal's Ctrl-C and
its launcher's SIGTERM, and still stops cleanly; the session makes every worker stop at the same step). Handlers
are process-wide, so this state is module-level; outside a stage, in threads other than the main one, and where
the process ignores a signal (SIGINT in a background job), the signals keep their usual handlers.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager

from diffcxr.errors import DiffCXRError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_armed = False  # a step loop is running: a signal becomes a stop request
_requested: int | None = None  # the first signal received while armed, else None


class TrainingInterrupted(DiffCXRError):
    """A stage stopped on SIGINT/SIGTERM after writing a checkpoint; ``exit_code`` is 128 + the signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + int(signum)


def requested() -> int | None:
    """The signal number that asked this process to stop, or None."""
    return _requested


def arm() -> None:
    """From now on a signal asks the running step loop to stop at the next step boundary."""
    global _armed
    _armed = True


def disarm() -> None:
    """Signals interrupt at once again (the step loop has ended)."""
    global _armed
    _armed = False


def _handle(signum, frame) -> None:
    global _requested
    if not _armed or _requested == signum:  # no step loop to stop cleanly, or the same signal again: stop now
        raise KeyboardInterrupt
    if _requested is not None:  # already stopping
        return
    _requested = signum
    print(f"\n[diffcxr] {signal.Signals(signum).name}: stopping after this step and writing a checkpoint "
          "(send it again to stop at once)", file=sys.stderr, flush=True)


@contextmanager
def stop_requests():
    """Within the block, SIGINT/SIGTERM request a stop at the next step boundary once a loop :func:`arm` s it
    (main thread only)."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # a signal the process was started to ignore (SIGINT of a background job: `cmd &`, nohup) stays ignored
    previous = {s: h for s in STOP_SIGNALS if (h := signal.getsignal(s)) != signal.SIG_IGN}
    _requested = None
    for s in previous:
        signal.signal(s, _handle)
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(s, handler)
        _requested = None
        disarm()
