"""One daemon thread serving a queue of work: what the synthesis queues and the render jobs share.

The thread starts with the first piece of work (a service that is never asked to render
loads nothing), sleeps on a condition while there is none, and ends when the owner closes
it; the owner holds :attr:`Worker.cond` while it changes its queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sized

from core.service.errors import Closing

__all__ = ["Worker"]


class Worker:
    """The lock, wake-ups and thread of one queue; ``run`` is the thread's loop."""

    def __init__(self, name: str, run: Callable[[], None]) -> None:
        self.name = name
        self.cond = threading.Condition()
        """Held by whoever reads or changes the queue (the owner's state with it)."""
        self.closed = False
        self._run = run
        self._thread: threading.Thread | None = None

    def check_open(self) -> None:
        """:class:`Closing` once the owner is shutting down (call holding :attr:`cond`)."""
        if self.closed:
            raise Closing("the service is shutting down; try again when it is back")

    def wake(self) -> None:
        """Work was queued: start the thread on the first, else wake it (holding :attr:`cond`)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self.cond.notify()

    def wait_for(self, queue: Sized) -> bool:
        """Sleep (holding :attr:`cond`) until ``queue`` holds work or the worker is closed;
        ``False`` when closed: the loop returns."""
        while not queue and not self.closed:
            self.cond.wait()
        return not self.closed

    def close(self) -> None:
        """Stop: the loop returns at its next wait (call holding :attr:`cond`)."""
        self.closed = True
        self.cond.notify_all()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the loop to end (not holding :attr:`cond`)."""
        if self._thread is not None:
            self._thread.join(timeout)
