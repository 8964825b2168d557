"""Per-host send queues: a campaign's send chains go to the queue of each host that holds
IPs of its pool, and to the shared queue when its IPs are loopback (any host) or it has
none; the broker is the test Redis database."""

import pytest
import redis
from django.conf import settings

from campaigns.models import Campaign
from espsite.celery import app
from sending.models import IpPool, SendingIp, WorkspacePool
from sending.tasks import campaign_send_fan_out
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker():
    """Tasks published to Redis instead of run inline; the queues emptied before and after."""
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queues = ["send", "send.mta1", "send.mta2"]
    client.delete(*queues)
    try:
        yield lambda queue: client.llen(queue)
    finally:
        client.delete(*queues)
        app.conf.task_always_eager = eager


def _campaign(pool: IpPool | None) -> Campaign:
    workspace = WorkspaceFactory()
    if pool is not None:
        WorkspacePool.objects.create(workspace=workspace, pool=pool)
    return Campaign.objects.create(
        workspace=workspace, name="Spring", subject="Hi", from_email="a@shop.test"
    )


def _ip(pool: IpPool, address: str, host: str, **fields) -> SendingIp:
    return SendingIp.objects.create(
        address=address, pool=pool, helo_hostname="mta.shop.test", bound_host=host, **fields
    )


def test_chains_go_to_each_host_of_the_pool(broker, settings):
    settings.SENDING_FANOUT = 3
    pool = IpPool.objects.create(name="Dedicated hosts")
    _ip(pool, "192.0.2.10", "mta1")
    _ip(pool, "192.0.2.11", "mta1")
    _ip(pool, "192.0.2.20", "mta2")
    _ip(pool, "192.0.2.30", "mta3", state=SendingIp.State.PAUSED)  # out of service

    campaign_send_fan_out(_campaign(pool).pk)

    assert broker("send.mta1") == 3
    assert broker("send.mta2") == 3
    assert broker("send") == 0


def test_a_pool_without_ips_or_with_loopback_ips_uses_the_shared_queue(broker, settings):
    settings.SENDING_FANOUT = 2
    campaign_send_fan_out(_campaign(None).pk)
    assert broker("send") == 2

    pool = IpPool.objects.create(name="Loopback")
    _ip(pool, "127.0.0.2", "")
    campaign_send_fan_out(_campaign(pool).pk)
    assert broker("send") == 4
