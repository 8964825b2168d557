"""Make sure the PostgreSQL and Redis of DATABASE_URL and REDIS_URL answer.

`python -m espsite.devservices ensure` starts (and if need be installs) a service only when
its URL points at this machine; a remote service is only checked. It then creates the
database and checks that the role may create the test databases pytest-django needs.

Standard library, psycopg and redis only: this runs before Django can be configured.
"""

import argparse
import ipaddress
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
import redis
from psycopg import pq, sql

# The same defaults as espsite/settings.py.
DATABASE_URL_DEFAULT = "postgres://postgres@127.0.0.1:5432/esp"
REDIS_URL_DEFAULT = "redis://127.0.0.1:6379/0"

POSTGRES_ETC = Path("/etc/postgresql")


class ServiceError(Exception):
    """A service that cannot be made to answer; the message names it."""


@dataclass(frozen=True)
class Postgres:
    host: str  # empty, or a directory, for the Unix socket
    port: int
    user: str
    password: str
    dbname: str
    options: dict[str, str]

    @classmethod
    def from_url(cls, url: str) -> "Postgres":
        parts = urlsplit(url)
        if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
            raise ServiceError(f"DATABASE_URL must be a postgres:// URL, not {url!r}.")
        # Not parts.hostname: it lowercases, and a percent-encoded host
        # ("%2Fvar%2Frun%2Fpostgresql") names a socket directory.
        hostport = parts.netloc.rpartition("@")[2]
        host = hostport.rpartition("]")[0].lstrip("[") if "]" in hostport else hostport
        if "]" not in hostport and ":" in hostport:
            host = hostport.rpartition(":")[0]
        return cls(
            host=unquote(host),
            port=parts.port or 5432,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            dbname=unquote(parts.path.lstrip("/")) or "postgres",
            options=dict(parse_qsl(parts.query)),
        )

    @property
    def label(self) -> str:
        return f"{self.host or 'socket'}:{self.port}"

    @property
    def is_local(self) -> bool:
        return not self.host or self.host.startswith("/") or is_loopback(self.host)

    def conninfo(self, dbname: str) -> str:
        params = {
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "password": self.password,
            "dbname": dbname,
            "connect_timeout": "3",
            **self.options,
        }
        return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v})

    def answers(self) -> bool:
        # libpq's ping, as pg_isready: OK even when the login would be refused; REJECT
        # while the server starts, stops or recovers, so not ready yet.
        return pq.PGconn.ping(self.conninfo("postgres").encode()) == pq.Ping.OK


@dataclass(frozen=True)
class Redis:
    url: str

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 6379

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}" if self.host else self.url

    @property
    def is_local(self) -> bool:
        # Only a TCP URL can be started here; a unix:// socket is just checked.
        return urlsplit(self.url).scheme == "redis" and is_loopback(self.host)

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=2)
        try:
            return bool(client.ping())
        except redis.AuthenticationError as exc:
            raise ServiceError(f"Redis {self.label} answers but refuses the login: {exc}") from exc
        except redis.ResponseError as exc:
            # NOAUTH and the like: the server answers, the URL is wrong.
            raise ServiceError(f"Redis {self.label} answers with an error: {exc}") from exc
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        except redis.RedisError as exc:
            raise ServiceError(
                f"something that is not Redis answers at {self.label}: {exc}"
            ) from exc
        finally:
            client.close()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def say(line: str) -> None:
    print(line, flush=True)


def _privileged() -> list[str]:
    """The prefix that runs a command as root: nothing for root, else sudo when present."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        return ["sudo"]
    raise ServiceError("root is needed to install or start a service, and sudo is missing.")


def _run(command: list[str], *, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=check)  # noqa: S603 - fixed argument lists only


_apt_updated = False


def apt_install(package: str) -> None:
    global _apt_updated  # one `apt-get update` per run
    apt = [*_privileged(), "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    if not shutil.which("apt-get"):
        raise ServiceError(f"{package} is not installed and there is no apt-get to install it.")
    say(f"installing {package} with apt-get …")
    try:
        if not _apt_updated:
            _run([*apt, "update"])
            _apt_updated = True
        _run([*apt, "install", "-y", package])
    except subprocess.CalledProcessError as exc:
        raise ServiceError(f"installing {package} failed (exit {exc.returncode}).") from exc


def wait_until(answers, *, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not answers():
        if time.monotonic() > deadline:
            raise ServiceError(f"{name} still does not answer after {timeout:.0f} s.")
        time.sleep(0.5)


def postgres_clusters() -> list[str]:
    if not POSTGRES_ETC.is_dir():
        return []
    return sorted(p.parent.parent.name for p in POSTGRES_ETC.glob("*/main/postgresql.conf"))


def trust_loopback(version: str) -> None:
    """Let a cluster installed just now accept the passwordless default DATABASE_URL."""
    hba = POSTGRES_ETC / version / "main" / "pg_hba.conf"
    lines = (
        "# espsite.devservices installed this cluster for development: trust loopback.\n"
        "host    all    all    127.0.0.1/32    trust\n"
        "host    all    all    ::1/128         trust\n"
    )
    try:
        hba.write_text(lines + hba.read_text())
    except OSError as exc:
        raise ServiceError(
            f"cannot edit {hba} ({exc.strerror}); as root, put these lines first:\n{lines}"
        ) from exc
    say(f"configured PostgreSQL {version} to trust loopback connections ({hba})")


def ensure_postgres(pg: Postgres, *, timeout: float) -> None:
    name = f"PostgreSQL {pg.label}"
    if pg.answers():
        say(f"{name} ok")
    elif not pg.is_local:
        raise ServiceError(
            f"{name} does not answer. It is not on this machine, so start it there "
            "or fix DATABASE_URL."
        )
    else:
        installed_now = False
        if not shutil.which("pg_ctlcluster"):
            apt_install("postgresql")
            installed_now = True
        clusters = postgres_clusters()
        if not clusters:
            raise ServiceError(f"{name} does not answer and {POSTGRES_ETC} holds no cluster.")
        for version in clusters:
            if installed_now and not pg.password:
                trust_loopback(version)
            ctl = [*_privileged(), "pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]
            # A cluster the package already started only needs to reread pg_hba.conf.
            _run([*ctl, "start"], check=False)
            if installed_now:
                _run([*ctl, "reload"], check=False)
        try:
            wait_until(pg.answers, name=name, timeout=timeout)
        except ServiceError as exc:
            raise ServiceError(
                f"{exc} Started clusters {', '.join(clusters)}: does one listen on port "
                f"{pg.port} ({POSTGRES_ETC}/<version>/main/postgresql.conf)?"
            ) from None
        say(f"started {name} (clusters {', '.join(clusters)})")
    ensure_database(pg)


def ensure_database(pg: Postgres) -> None:
    try:
        conn = psycopg.connect(pg.conninfo("postgres"), autocommit=True)
    except psycopg.OperationalError as exc:
        raise ServiceError(
            f"PostgreSQL {pg.label} answers but refuses user {pg.user or '(default)'!r} "
            f"on database 'postgres': {str(exc).strip()}"
        ) from exc
    with conn:
        role, may_create = conn.execute(
            "SELECT current_user, rolsuper OR rolcreatedb FROM pg_roles"
            " WHERE rolname = current_user"
        ).fetchone()
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [pg.dbname]
        ).fetchone()
        if exists:
            say(f"database {pg.dbname!r} exists")
        elif may_create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(pg.dbname)))
            say(f"created database {pg.dbname!r}")
        if not may_create:
            raise ServiceError(
                f"PostgreSQL role {role!r} may not create databases, and the tests need to "
                f"(pytest-django makes test_{pg.dbname}). As a superuser: "
                f"ALTER ROLE {role} CREATEDB;"
            )
        say(f"role {role!r} may create databases")


def ensure_redis(rd: Redis, *, timeout: float) -> None:
    name = f"Redis {rd.label}"
    if rd.answers():
        say(f"{name} ok")
        return
    if not rd.is_local:
        raise ServiceError(
            f"{name} does not answer. It is not on this machine (or is a socket), so start "
            "it there or fix REDIS_URL."
        )
    if not shutil.which("redis-server"):
        apt_install("redis-server")
    # Nothing kept on disk: a development broker and cache only.
    command = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1"]
    command += ["--port", str(rd.port), "--save", "", "--appendonly", "no"]
    try:
        _run(command)
    except subprocess.CalledProcessError as exc:
        raise ServiceError(f"redis-server failed to start (exit {exc.returncode}).") from exc
    wait_until(rd.answers, name=name, timeout=timeout)
    say(f"started {name}")


def ensure(*, timeout: float) -> None:
    database_url = os.environ.get("DATABASE_URL", "").strip() or DATABASE_URL_DEFAULT
    redis_url = os.environ.get("REDIS_URL", "").strip() or REDIS_URL_DEFAULT
    ensure_postgres(Postgres.from_url(database_url), timeout=timeout)
    ensure_redis(Redis(redis_url), timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m espsite.devservices", description=__doc__)
    parser.add_argument("action", choices=["ensure"])
    parser.add_argument(
        "--timeout", type=float, default=30, help="seconds to wait for a started service"
    )
    args = parser.parse_args(argv)
    try:
        ensure(timeout=args.timeout)
    except ServiceError as exc:
        print(f"devservices: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
