"""Inbound bounce throughput: DSN bounces accepted by the real `mailin` listener and
processed by real Celery workers, against a bare aiosmtpd sink driven by the same client.

    .venv/bin/python bench/mailin.py [--bounces 2000] [--connections 8] [--concurrency 2]

Creates a database of its own (esp_bench_mailin, dropped and recreated, dropped again at
the end unless --keep) and uses Redis database 9 (flushed) as broker, result backend and
cache. Seeds one workspace with a verified sending domain, N contacts on a list and a sent
campaign with one `sent` delivery each. Starts `manage.py mailin` on a free loopback port
and a Celery worker for the `default` queue (prefork, --concurrency) as subprocesses, then
sends one realistic RFC 3464 DSN per delivery (Postfix-shaped: multipart/report with the
returned headers; 70% user unknown, 20% mailbox full, 10% blocked as spam) to its VERP
address, from `--connections` threads, each over one reused smtplib connection (several
concurrent sessions: one session's speed swings with CPU placement on these VMs). It waits
until every stored InboundMessage has left `received`.

    bounces_per_s   bounces / (first MAIL FROM .. last InboundMessage.processed_at)
    accepted_per_s  bounces / (first MAIL FROM .. last 250 after DATA)
    baseline_per_s  the same client and messages against a bare aiosmtpd sink (a
                    subprocess whose handler answers 250 and discards), in the same run
    ratio           bounces_per_s / baseline_per_s
    lost            answered 250 but not processed after the drain (must be 0)

Prints one JSON line.
"""

import argparse
import contextlib
import json
import os
import signal
import smtplib
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import (  # noqa: E402 (after the path is set)
    Children,
    bench_data_drop,
    database_recreate,
    environment_base,
    free_port,
    redis_flush,
    targets_check,
)

DOMAIN = "news.bench-shop.example"
DRAIN_STALL_SECONDS = 30
# (share, status, diagnostic): what the DSNs report, by delivery index.
REASONS = [
    (7, "5.1.1", "550 5.1.1 <{address}>: Recipient address rejected: User unknown"),
    (2, "4.2.2", "452 4.2.2 <{address}>: Mailbox full, over quota"),
    (1, "5.7.1", "554 5.7.1 Service unavailable; Client host [198.51.100.7] blocked "
                 "using zen.spamhaus.org"),
]  # fmt: skip


def _log(message: str) -> None:
    print(f"[bench/mailin] {message}", file=sys.stderr, flush=True)


def _environment(options: argparse.Namespace) -> None:
    """Settings for this process and every process it starts (they inherit os.environ)."""
    env = environment_base(
        name="mailin", database_url=options.database_url, redis_url=options.redis_url
    )
    env["MAILIN_MAX_CONNECTIONS"] = str(max(100, options.connections * 2))
    env["MAILIN_MAX_CONNECTIONS_PER_PEER"] = str(max(10, options.connections * 2))


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _port_wait(port: int, children: Children, name: str, timeout: float = 60.0) -> None:
    """Until the server on port answers its greeting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name in children.dead():
            raise RuntimeError(f"{name} exited while starting")
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client = smtplib.SMTP("127.0.0.1", port, timeout=2)
            client.quit()
            return
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer on port {port} within {timeout:.0f} s")


def _worker_wait(children: Children, node: str, timeout: float = 90.0) -> None:
    from espsite.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if children.dead():
            raise RuntimeError(f"{', '.join(children.dead())} exited while starting")
        if any(node in reply for reply in app.control.ping(timeout=1.0)):
            return
    raise RuntimeError(f"the worker did not answer within {timeout:.0f} s")


# --- the data ----------------------------------------------------------------------------


def _seed(count: int) -> list[tuple[int, str]]:
    """Workspace, verified domain, N contacts on a list, a sent campaign with one `sent`
    delivery each: the (delivery id, address) pairs."""
    from django.utils import timezone

    from accounts.models import Workspace
    from campaigns.models import Campaign
    from contacts.models import Contact, ContactList, Subscription
    from sending.models import Delivery, SendingDomain

    now = timezone.now()
    workspace = Workspace.objects.create(
        name="Mailin bench",
        slug="mailin-bench",
        postal_address="1 Harbour Street, Bristol",
        status=Workspace.Status.ACTIVE,
        status_changed_at=now,
    )
    SendingDomain.objects.create(
        workspace=workspace,
        domain=DOMAIN,
        return_path_subdomain="bounces",
        tracking_subdomain="links",
        status=SendingDomain.Status.VERIFIED,
        first_verified_at=now,
        last_checked_at=now,
        is_warmed_up=True,  # an established domain: no new-domain caps
    )
    contact_list = ContactList.objects.create(workspace=workspace, name="Newsletter")
    contacts = Contact.objects.bulk_create(
        Contact(workspace=workspace, email=f"reader{n}@mail{n % 50}.example", status="active")
        for n in range(count)
    )
    Subscription.objects.bulk_create(
        Subscription(workspace=workspace, contact=c, contact_list=contact_list, status="subscribed")
        for c in contacts
    )
    campaign = Campaign.objects.create(
        workspace=workspace,
        name="Spring newsletter",
        subject="The spring news",
        from_name="Bench Shop",
        from_email=f"hello@{DOMAIN}",
        status=Campaign.Status.SENT,
    )
    deliveries = Delivery.objects.bulk_create(
        Delivery(
            workspace=workspace,
            campaign=campaign,
            contact=contact,
            address=contact.email,
            state=Delivery.State.SENT,
            sent_at=now,
            message_id=f"<bench.{n}@{DOMAIN}>",
        )
        for n, contact in enumerate(contacts)
    )
    return [(delivery.pk, delivery.address) for delivery in deliveries]


def _reason(index: int) -> tuple[str, str]:
    cycle = sum(share for share, _, _ in REASONS)
    position = index % cycle
    for share, status, diagnostic in REASONS:
        if position < share:
            return status, diagnostic
        position -= share
    raise AssertionError


def _dsn(index: int, address: str, return_path: str) -> bytes:
    """A Postfix-shaped RFC 3464 report for one delivery, sent to its VERP address."""
    status, diagnostic = _reason(index)
    diagnostic = diagnostic.format(address=address)
    remote = f"mx.{address.rpartition('@')[2]}"
    temporary = status.startswith("4")
    subject = (
        "Delayed Mail (still being retried)" if temporary else "Undelivered Mail Returned to Sender"
    )
    text = f"""\
From: MAILER-DAEMON@relay.isp.example (Mail Delivery System)
To: {return_path}
Subject: {subject}
Date: Sun, 29 Nov 2026 10:00:00 +0000
Message-ID: <dsn.{index}@relay.isp.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B{index}"

This is a MIME-encapsulated message.

--B{index}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.isp.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<{address}>: host {remote}[203.0.113.{index % 250 + 1}] said: {diagnostic}
    (in reply to RCPT TO command)

--B{index}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.isp.example
X-Postfix-Queue-ID: 4Rk{index:06X}
X-Postfix-Sender: rfc822; {return_path}
Arrival-Date: Sun, 29 Nov 2026 09:59:59 +0000

Final-Recipient: rfc822; {address}
Original-Recipient: rfc822;{address}
Action: {"delayed" if temporary else "failed"}
Status: {status}
Remote-MTA: dns; {remote}
Diagnostic-Code: smtp; {diagnostic}

--B{index}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <{return_path}>
Received: from app.esp.example (app.esp.example [192.0.2.10])
\tby relay.isp.example (Postfix) with ESMTPS id 4Rk{index:06X}
\tfor <{address}>; Sun, 29 Nov 2026 09:59:59 +0000 (UTC)
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={DOMAIN}; s=bench1;
\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;
\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSwganVzdCBpdHMgc2l6ZQ==
From: Bench Shop <hello@{DOMAIN}>
To: {address}
Subject: The spring news
Date: Sun, 29 Nov 2026 09:59:58 +0000
Message-ID: <bench.{index}@{DOMAIN}>
List-Unsubscribe: <mailto:unsubscribe+x@bounces.{DOMAIN}>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="===b"

--B{index}--
"""
    return text.replace("\n", "\r\n").encode()


def _messages(pairs: list[tuple[int, str]]) -> list[tuple[str, bytes]]:
    from sending import verp

    host = f"bounces.{DOMAIN}"
    out = []
    for index, (delivery_id, address) in enumerate(pairs):
        return_path = verp.verp_address(delivery_id=delivery_id, domain=host)
        out.append((return_path, _dsn(index, address, return_path)))
    return out


# --- the client ------------------------------------------------------------------------------


def _drive(port: int, messages: list[tuple[str, bytes]], connections: int) -> dict:
    """`connections` threads, each over one reused connection, a share of the messages each:
    started together; how many were answered 250 and when the last one was."""
    shares = [messages[n::connections] for n in range(connections)]
    clients = []
    for _ in shares:
        client = smtplib.SMTP("127.0.0.1", port, local_hostname="relay.isp.example", timeout=60)
        client.ehlo()
        clients.append(client)
    barrier = threading.Barrier(connections + 1)
    accepted = [0] * connections
    refused: list[str] = []

    def push(slot: int) -> None:
        client = clients[slot]
        barrier.wait()
        for rcpt, raw in shares[slot]:
            try:
                client.sendmail("", [rcpt], raw)
                accepted[slot] += 1
            except smtplib.SMTPException as error:
                refused.append(repr(error)[:200])
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()

    threads = [threading.Thread(target=push, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started_at = time.time()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return {
        "started_at": started_at,
        "seconds": time.perf_counter() - started,
        "accepted": sum(accepted),
        "refused": refused[:5],
    }


def _drain(total_accepted: int, children: Children, logs: Path) -> dict:
    """Until no stored message is still `received` (or no progress for a while)."""
    from django.db.models import Count, Max

    from sending.models import InboundMessage

    received = InboundMessage.Status.RECEIVED
    last_left, last_change, last_report = None, time.monotonic(), time.monotonic()
    while True:
        left = InboundMessage.objects.filter(status=received).count()
        stored = InboundMessage.objects.count()
        if left == 0 and stored >= total_accepted:
            break
        if left != last_left:
            last_left, last_change = left, time.monotonic()
        elif time.monotonic() - last_change > DRAIN_STALL_SECONDS:
            worker_log = _tail(logs / "worker.log")
            _log(f"no progress for {DRAIN_STALL_SECONDS} s; worker log:\n{worker_log}")
            break
        if children.dead():
            _log(f"{', '.join(children.dead())} died:\n{_tail(logs / 'worker.log')}")
            break
        if time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            _log(f"{left} of {stored} stored messages still to process")
        time.sleep(0.1)
    rows = InboundMessage.objects.exclude(status=received)
    by_status = dict(rows.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    return {
        "processed": sum(by_status.values()),
        "stored": InboundMessage.objects.count(),
        "by_status": by_status,
        "last_processed_at": rows.aggregate(last=Max("processed_at"))["last"],
    }


# --- the baseline sink (a subprocess running this file) ----------------------------------


def _as_sink(port: int) -> None:
    """A bare aiosmtpd server: accept anything, answer 250, keep nothing."""
    import logging

    from aiosmtpd.controller import Controller

    class Discard:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = Controller(Discard(), hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


# --- the run -----------------------------------------------------------------------------------


def _run(options: argparse.Namespace, children: Children, logs: Path, made: set) -> dict:
    _environment(options)
    _log(f"recreating {options.database_url.rsplit('/', 1)[1]}, flushing {options.redis_url}")
    made.add("database")
    database_recreate(options.database_url)
    redis_flush(options.redis_url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from sending.models import Delivery

    call_command("migrate", verbosity=0)
    _log(f"seeding {options.bounces} sent deliveries")
    pairs = _seed(options.bounces)
    messages = _messages(pairs)
    size = sum(len(raw) for _, raw in messages) // len(messages)

    mailin_port, sink_port = free_port(), free_port()
    node = f"bench-mailin@{socket.gethostname()}"
    python = sys.executable
    children.start(
        "mailin",
        [python, "manage.py", "mailin", "--host", "127.0.0.1", "--port", str(mailin_port)],
        log=logs / "mailin.log",
    )
    children.start(
        "worker",
        [python, "-m", "celery", "-A", "espsite", "worker", "-Q", "default", "-n", node,
         "--concurrency", str(options.concurrency), "-l", "warning"],
        log=logs / "worker.log",
    )  # fmt: skip
    children.start(
        "sink", [python, str(Path(__file__).resolve()), "--as-sink", str(sink_port)],
        log=logs / "sink.log",
    )  # fmt: skip
    _log("waiting for mailin, the worker and the sink")
    _port_wait(mailin_port, children, "mailin")
    _port_wait(sink_port, children, "sink")
    _worker_wait(children, node)
    connection.close()  # idle during the run: one backend fewer

    _log(f"baseline: {len(messages)} DSNs of ~{size} bytes over {options.connections} sessions")
    baseline = _drive(sink_port, messages, options.connections)
    _log(f"baseline: {baseline['accepted'] / baseline['seconds']:.0f}/s")

    _log(f"mailin: {len(messages)} DSNs over {options.connections} sessions")
    sent = _drive(mailin_port, messages, options.connections)
    _log(f"mailin accepted {sent['accepted']} in {sent['seconds']:.1f} s; draining")
    drained = _drain(sent["accepted"], children, logs)
    processed_s = drained["last_processed_at"].timestamp() - sent["started_at"]
    bounced = Delivery.objects.filter(state=Delivery.State.BOUNCED).count()
    bounces_per_s = drained["processed"] / processed_s
    baseline_per_s = baseline["accepted"] / baseline["seconds"]
    return {
        "bounces_per_s": round(bounces_per_s, 1),
        "baseline_per_s": round(baseline_per_s, 1),
        "ratio": round(bounces_per_s / baseline_per_s, 3),
        "lost": sent["accepted"] - drained["processed"],
        "accepted_per_s": round(sent["accepted"] / sent["seconds"], 1),
        "bounces": len(messages),
        "accepted": sent["accepted"],
        "refused": sent["refused"],
        "processed": drained["processed"],
        "by_status": drained["by_status"],
        "deliveries_bounced": bounced,
        "seconds": round(processed_s, 2),
        "accept_seconds": round(sent["seconds"], 2),
        "message_bytes": size,
        "connections": options.connections,
        "workers": options.concurrency,
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--as-sink":
        _as_sink(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bounces", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=8, help="concurrent SMTP sessions")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's processes")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/esp_bench_mailin"
        ),
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    options = parser.parse_args()
    targets_check(options)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    children = Children(log=_log)
    logs = Path(tempfile.mkdtemp(prefix="bench-mailin-"))
    made: set[str] = set()
    failed = True
    try:
        result = _run(options, children, logs, made)
        failed = False
    finally:
        children.stop()
        bench_data_drop(options, made)
        if failed or options.keep:
            _log(f"logs kept in {logs}")
        else:
            import shutil

            shutil.rmtree(logs, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
