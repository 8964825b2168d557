"""The production gunicorn configuration of a web node:

    gunicorn -c espsite/gunicorn.conf.py espsite.wsgi

Every setting below can be changed through the environment named next to it; a flag on
the command line (or GUNICORN_CMD_ARGS) overrides this file. bench/tracking.py measures the
tracking endpoints behind exactly this file.
"""

import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, not {raw!r}.") from None


def _cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Every interface by default: the load balancer reaches the node from another host. Put a
# loopback address here when a proxy on the same host is the only client.
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000").split(",")

# Processes: 2 * cores + 1, gunicorn's rule of thumb: a process waiting on PostgreSQL or a
# client leaves its core to another. WEB_CONCURRENCY is the name platforms set.
workers = _int("GUNICORN_WORKERS", _int("WEB_CONCURRENCY", 2 * _cores() + 1))

# Threads, not just processes: requests that wait on PostgreSQL (pages) leave the process
# to others. The open pixel and click redirects wait on nothing: each request thread
# appends its hit to its own spool file (tracking/spool.py) and answers; one flusher
# thread per process inserts them in batches (bench/tracking.py: 16 threads answered
# about a quarter more than 8; 32, no more). Each thread that serves pages keeps a
# connection (DATABASE_CONN_MAX_AGE), plus one for the flusher: size PostgreSQL's
# max_connections (or a pooler such as PgBouncer) for workers * (threads + 1) per node.
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 16)

# Connections a process holds open at once (idle keep-alive ones included); gunicorn's
# default, stated so it is seen next to threads.
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", 1000)

# A process whose main loop has not checked in for this long is killed and replaced. With
# gthread the main loop checks in while requests run on other threads, so this catches a
# wedged process, not a slow request.
timeout = _int("GUNICORN_TIMEOUT", 30)

# On SIGTERM / SIGHUP, requests in progress get this long to finish; then each process's
# spool flusher buffers what is left (a spool it cannot flush stays on disk and is adopted
# by the next process on the node).
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)

# Idle keep-alive connections are closed after this many seconds. Behind a load balancer
# it must outlast the balancer's own idle timeout (60 s on most), or the balancer may send
# a request on a connection gunicorn is closing and answer 502. Serving clients directly,
# use 2-5 s.
keepalive = _int("GUNICORN_KEEPALIVE", 75)

# Replace each process after this many requests (plus up to the jitter, so the processes
# do not all restart together): a leak in a library cannot grow without bound. Sized for
# the tracking endpoints' rate: a node answering thousands of pixels a second would
# otherwise start a process (importing Django, a second of CPU) every few seconds. 0
# turns it off.
max_requests = _int("GUNICORN_MAX_REQUESTS", 200_000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 20_000)

# Not preloaded: each process imports the app itself, so nothing opened during import
# (database connections, the spool's thread and lock) is shared across fork, and
# `kill -HUP` loads new code.
preload_app = False

# A click token carries its target URL: the middleware accepts tokens up to 4 KB, and
# "GET /c/<4 KB token> HTTP/1.1" is longer than gunicorn's default request line (4094).
# 8190 is gunicorn's largest.
limit_request_line = 8190

# The heartbeat file on tmpfs: on a disk-backed /tmp its fchmod can stall a process.
# (gunicorn makes it with mkstemp and unlinks it at once: no predictable name.)
_SHM = "/dev/shm"  # noqa: S108
worker_tmp_dir = _SHM if os.path.isdir(_SHM) else None

# No access log by default: the load balancer logs requests, and one line per pixel is the
# busiest write of the node. GUNICORN_ACCESS_LOG=- prints it on stdout. Errors go to stderr.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# Client addresses and https come from Django (TRUSTED_PROXIES, accounts/request_ip.py);
# gunicorn's forwarded_allow_ips stays at its loopback-only default.
proc_name = "esp-web"
