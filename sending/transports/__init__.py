"""The ways out, behind one interface (base.py): `smtp` (relay to a smarthost), `mx` (direct
to each recipient's MX) and `anymail` (an ESP API through django-anymail).

    transport = transport_for(pool)       # pool.transport, else settings.SENDING_TRANSPORT
    results = transport.send_many(envelopes)

One instance per process per configuration, kept for the life of the worker so that its
connections are reused across batches; a name may also be a dotted path to a class with
the same shape (a benchmark's or a test's own). `transports_close()` closes them all, on
worker shutdown and between tests.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

from sending.transports.base import Transport, TransportConfigError

if TYPE_CHECKING:
    from sending.models import IpPool

TRANSPORTS = {
    "smtp": "sending.transports.smtp.SmtpTransport",
    "mx": "sending.transports.mx.MxTransport",
    "anymail": "sending.transports.anymail.AnymailTransport",
}

_instances: dict[tuple, Transport] = {}
_lock = threading.Lock()
_pid = os.getpid()


def transport_class(name: str) -> Any:
    path = TRANSPORTS.get(name, name if "." in name else "")
    if not path:
        raise TransportConfigError(
            f"Unknown transport {name!r}; use one of {', '.join(TRANSPORTS)} or a dotted path."
        )
    try:
        return import_string(path)
    except ImportError as error:
        raise TransportConfigError(f"Transport {name!r} cannot be loaded: {error}") from error


def transport_for(pool: IpPool | None = None) -> Transport:
    """The transport of an IP pool (blank, or no pool: the platform's default)."""
    global _pid
    name = (
        getattr(pool, "transport", "") if pool is not None else ""
    ) or settings.SENDING_TRANSPORT
    cls = transport_class(name)
    options = cls.settings_options() if hasattr(cls, "settings_options") else {}
    key = (name, tuple(sorted(options.items())))
    with _lock:
        if _pid != os.getpid():
            # A forked worker: the parent's connections and loop threads are not ours.
            _instances.clear()
            _pid = os.getpid()
        transport = _instances.get(key)
        if transport is None:
            transport = _instances[key] = cls(**options)
    return transport


def transports_close() -> None:
    """Close every transport of this process (QUIT on open connections)."""
    with _lock:
        instances = list(_instances.values())
        _instances.clear()
    for transport in instances:
        transport.close()
