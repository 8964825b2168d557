"""Serving an aiosmtpd controller from a management command until it is told to stop
(`manage.py mailin`, `manage.py smtp_sink`)."""

import os
import signal
import threading
from collections.abc import Callable

from aiosmtpd.controller import Controller


def controller_serve(
    *,
    controller: Controller,
    stop_grace_seconds: float,
    ready: Callable[[], None] | None = None,
) -> None:
    """Block until SIGINT or SIGTERM, then stop the started controller. `ready` is called
    once the signals are caught (a caller that waits for the "listening" line may signal at
    once).

    A client that never hangs up must not keep the server alive once it was told to stop:
    the controller gets stop_grace_seconds, then the process leaves regardless.
    """
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        if ready is not None:
            ready()
        stop.wait()
    finally:
        stopper = threading.Thread(target=controller.stop, daemon=True)
        stopper.start()
        stopper.join(timeout=stop_grace_seconds)
        if stopper.is_alive():
            os._exit(0)
