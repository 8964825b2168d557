"""Hosts and their addresses (sending/hosts.py): what this host has, what other hosts'
workers published in Redis, and a real send worker taking its own host's queue."""

import ipaddress
import socket

import pytest
import redis
from celery.exceptions import QueueNotFound
from kombu import Queue

from espsite.tasks import ping_task
from sending import hosts
from tests.conftest import redis_test_url
from tests.sending.crash.harness import wait_for
from tests.sending.test_pipeline_workers import wait_for_workers

TEST_NET = "192.0.2.55"  # RFC 5737: documentation only, on no host


def _a_non_loopback_local_address() -> str:
    found = sorted(
        address
        for address in hosts.local_addresses()
        if not ipaddress.ip_address(address).is_loopback
        and not ipaddress.ip_address(address).is_link_local
    )
    assert found, "this machine has no address besides loopback"
    return found[0]


def test_the_queue_of_a_host_is_send_dot_its_name():
    assert hosts.host_queue("mta2.example.net") == "send.mta2.example.net"
    assert hosts.host_queue("") == "send"


def test_the_host_name_is_the_setting(settings):
    settings.SENDING_HOST_NAME = "mta7"
    assert hosts.host_name() == "mta7"
    assert hosts.host_queue(hosts.host_name()) == "send.mta7"


def test_local_addresses_are_the_kernels_and_each_can_be_bound():
    addresses = hosts.local_addresses()
    assert "127.0.0.1" in addresses
    assert TEST_NET not in addresses
    for address in addresses:
        parsed = ipaddress.ip_address(address)
        assert str(parsed) == address  # normalised
        if parsed.is_link_local:
            continue  # binding needs the interface's scope
        family = socket.AF_INET if parsed.version == 4 else socket.AF_INET6
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))  # the kernel agrees it is ours


def test_loopback_is_local_a_documentation_address_is_not():
    assert hosts.address_is_local("127.0.0.1")
    assert hosts.address_is_local("127.0.0.2")  # all of 127.0.0.0/8, configured or not
    assert hosts.address_is_local("::1")
    assert hosts.address_is_local(_a_non_loopback_local_address())
    assert not hosts.address_is_local(TEST_NET)
    assert not hosts.address_is_local("2001:db8::55")
    assert not hosts.address_is_local("not an address")


def test_another_hosts_published_addresses_answer_for_it(settings):
    own = _a_non_loopback_local_address()
    settings.SENDING_HOST_NAME = "mta-a"
    hosts.host_addresses_publish()
    settings.SENDING_HOST_NAME = "web1"  # read from a web node elsewhere

    assert hosts.host_has_address("mta-a", own) is True
    assert hosts.host_has_address("mta-a", TEST_NET) is False
    assert hosts.host_has_address("mta-a", "127.0.0.9") is True  # loopback: every host
    assert hosts.host_has_address("mta-b", TEST_NET) is None  # no worker there yet
    assert hosts.host_has_address("mta-a", "bogus") is False
    ttl = redis.Redis.from_url(redis_test_url()).ttl("shaping:host:mta-a")
    assert 0 < ttl <= hosts.HOST_ADDRESSES_TTL_SECONDS


def test_this_hosts_own_name_is_answered_from_the_kernel_without_redis(settings):
    settings.SENDING_HOST_NAME = "web1"  # nothing published under this name
    assert hosts.host_has_address("web1", _a_non_loopback_local_address()) is True
    assert hosts.host_has_address("web1", TEST_NET) is False


def test_publishing_again_replaces_what_was_published(settings):
    settings.SENDING_HOST_NAME = "mta-a"
    client = redis.Redis.from_url(redis_test_url())
    client.sadd("shaping:host:mta-a", TEST_NET)  # an address since removed from the host
    hosts.host_addresses_publish()
    settings.SENDING_HOST_NAME = "web1"
    assert hosts.host_has_address("mta-a", TEST_NET) is False


# --- a real worker ---------------------------------------------------------------------------


@pytest.fixture
def hostx_env(monkeypatch) -> None:
    monkeypatch.setenv("SENDING_HOST_NAME", "hostx")


@pytest.fixture
def hostx_workers(hostx_env, celery_worker_process):
    """Worker processes on a host named "hostx": celery_worker_process copies os.environ
    when it is set up, so hostx_env comes first."""
    return celery_worker_process


@pytest.mark.django_db(transaction=True)
@pytest.mark.serial
def test_a_send_worker_takes_its_hosts_queue_and_publishes_its_addresses(hostx_workers):
    from espsite.celery import app

    hostx_workers(queues="send", name="sendx")
    hostx_workers(queues="default", name="plainx")
    wait_for_workers("sendx", 1)
    wait_for_workers("plainx", 1)

    active = app.control.inspect(timeout=2).active_queues() or {}
    queues = {name.split("@")[0]: {q["name"] for q in found} for name, found in active.items()}
    assert queues["sendx0"] == {"send", "send.hostx"}
    assert queues["plainx1"] == {"default"}  # not a send worker: not the host's queue

    # task_create_missing_queues is off: another host's queue is given as a Queue.
    with pytest.raises(QueueNotFound):
        ping_task.apply_async(args=["x"], queue="send.hostx")
    result = ping_task.apply_async(args=["hostx"], queue=Queue("send.hostx"))
    assert result.get(timeout=20) == "pong:hostx"

    # Published when the worker is ready, which may come a moment after its first task.
    published = wait_for(
        lambda: hosts.host_addresses_published("hostx"), timeout=15, what="hostx's addresses"
    )
    assert hosts.local_addresses() <= published  # the same machine: the same addresses
    assert hosts.host_has_address("hostx", _a_non_loopback_local_address()) is True
    assert hosts.host_has_address("hostx", TEST_NET) is False
    ttl = redis.Redis.from_url(redis_test_url()).ttl("shaping:host:hostx")
    assert 0 < ttl <= hosts.HOST_ADDRESSES_TTL_SECONDS
