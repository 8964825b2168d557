"""The open pixel and click endpoints, through the whole middleware stack: what they answer,
what they record, and what they refuse (forged or altered tokens, unsafe targets, other
methods, oversized or non-ASCII paths, unknown hosts), without queries for what is refused.

The tests commit their rows (transaction=True): the spool's flusher buffers hits from its
own thread and connection, as it does in production."""

import os
import threading
import time
import uuid
from wsgiref.util import setup_testing_defaults

import pytest
from django.db import DatabaseError, connection
from django.test import Client

from sending import links
from sending.models import SendingDomain
from tests.factories import WorkspaceFactory
from tests.tracking.test_ingest import campaign_make, delivery_make
from tracking.endpoints import PIXEL, event_key_new, tracking_hosts_forget
from tracking.ingest import pending_hits_drain_all
from tracking.models import DeliveryActivity, Event, LinkActivity, PendingHit
from tracking.spool import spool_flush

pytestmark = pytest.mark.django_db(transaction=True)

TARGET = "https://shop.example/sale?utm_source=news&a=1"
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private",
    "Pragma": "no-cache",
    "Expires": "0",
}


@pytest.fixture(autouse=True)
def _clean_slate():
    tracking_hosts_forget()
    yield
    spool_flush()
    tracking_hosts_forget()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tracking_event")


@pytest.fixture
def campaign():
    return campaign_make(WorkspaceFactory())


@pytest.fixture
def delivery(campaign):
    return delivery_make(campaign)


@pytest.fixture
def client():
    return Client(HTTP_USER_AGENT=BROWSER)


def pixel_path(delivery_id: int) -> str:
    return links.OPEN_PATH.format(token=links.open_token(delivery_id=delivery_id))


def click_path(delivery_id: int, url: str = TARGET) -> str:
    return links.CLICK_PATH.format(token=links.click_token(delivery_id=delivery_id, url=url))


def recorded() -> list[tuple]:
    """Every event stored, once the spool has been flushed to the buffer and the drain has
    stored it."""
    spool_flush()
    pending_hits_drain_all()
    return list(
        Event.objects.order_by("occurred_at").values_list(
            "delivery_id", "kind", "url", "method", "machine_rule"
        )
    )


def assert_pixel(response) -> None:
    assert response.status_code == 200
    assert response.content == PIXEL
    assert len(response.content) == 43
    assert response["Content-Type"] == "image/gif"
    assert response["Content-Length"] == "43"
    for header, value in NO_CACHE.items():
        assert response[header] == value


def test_the_pixel_is_the_gif_and_records_one_open(client, delivery, django_assert_num_queries):
    with django_assert_num_queries(0):  # none on the request: the spool's flusher buffers it
        response = client.get(pixel_path(delivery.pk))
    assert_pixel(response)
    assert recorded() == [(delivery.pk, "open", "", "GET", "")]
    activity = DeliveryActivity.objects.get(delivery=delivery)
    assert (activity.opens, activity.human_opens) == (1, 1)
    event = Event.objects.get()
    assert (event.user_agent, event.ip) == (BROWSER, "127.0.0.1")


def test_a_head_request_for_the_pixel_counts_as_a_machines_open(client, delivery):
    response = client.head(pixel_path(delivery.pk))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    assert recorded() == [(delivery.pk, "open", "", "HEAD", "head_request")]
    assert DeliveryActivity.objects.get(delivery=delivery).human_opens == 0


def test_tracking_answers_set_no_cookie_and_skip_the_rest_of_the_stack(client, delivery):
    for path in (pixel_path(delivery.pk), click_path(delivery.pk)):
        response = client.get(path)
        assert not response.cookies
        assert "Vary" not in response  # no session or CSRF middleware ran
        assert "X-Frame-Options" not in response


@pytest.mark.parametrize(
    "token",
    [
        "forged.AAAAAAAAAAAAAAAAAAAAAA",
        "1.x",
        "",
        "....",
        "a" * 10_000,
    ],
)
def test_a_forged_pixel_gets_the_same_gif_without_a_query(
    client, delivery, token, django_assert_num_queries
):
    with django_assert_num_queries(0):
        response = client.get(links.OPEN_PATH.format(token=token))
    assert_pixel(response)
    assert recorded() == []


def test_a_pixel_of_another_delivery_cannot_be_made(client, delivery):
    genuine = links.open_token(delivery_id=delivery.pk)
    other_id = links.open_token(delivery_id=delivery.pk + 1).split(".")[0]
    forged = f"{other_id}.{genuine.split('.')[1]}"
    assert_pixel(client.get(links.OPEN_PATH.format(token=forged)))
    assert recorded() == []


def test_a_click_redirects_to_exactly_the_signed_url_and_is_recorded(client, delivery):
    response = client.get(click_path(delivery.pk))
    assert response.status_code == 302
    assert response["Location"] == TARGET
    assert recorded() == [(delivery.pk, "click", TARGET, "GET", "")]
    link = LinkActivity.objects.get()
    assert (link.url, link.clicks, link.unique_clicks) == (TARGET, 1, 1)


def test_altered_click_tokens_are_refused(client, delivery, campaign, django_assert_num_queries):
    other = delivery_make(campaign)
    mine = links.click_token(delivery_id=delivery.pk, url=TARGET)
    evil = links.click_token(delivery_id=delivery.pk, url="https://evil.example/")
    mine_id, mine_url, mine_mac = mine.split(".")
    other_id = links.click_token(delivery_id=other.pk, url=TARGET).split(".")[0]
    forged = [
        f"{other_id}.{mine_url}.{mine_mac}",  # someone else's delivery
        f"{mine_id}.{evil.split('.')[1]}.{mine_mac}",  # another URL
        f"{mine_id}.{mine_url}.{mine_mac[:-2]}AA",
        f"{mine_id}.{mine_url}",
        mine + ".x",
    ]
    for token in forged:
        with django_assert_num_queries(0):
            response = client.get(links.CLICK_PATH.format(token=token))
        assert response.status_code == 404, token
        assert "Location" not in response
    assert recorded() == []


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/login",
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "https:///no-host",
        "/relative/path",
        "https://shop.example/\r\nSet-Cookie: a=b",
        "https://shop.example\\@evil.example/",
    ],
)
def test_unsafe_signed_targets_are_never_followed(client, delivery, target):
    """An editor may have stored them; the token is genuine, the target still is not."""
    response = client.get(click_path(delivery.pk, target))
    assert response.status_code == 404
    assert "Location" not in response
    assert recorded() == []


def test_a_head_request_redirects_and_counts_as_a_machine(client, delivery):
    response = client.head(click_path(delivery.pk))
    assert response.status_code == 302
    assert response["Location"] == TARGET
    assert response.content == b""
    assert recorded() == [(delivery.pk, "click", TARGET, "HEAD", "head_request")]
    link = LinkActivity.objects.get()
    assert (link.clicks, link.human_clicks, link.unique_human_clicks) == (1, 0, 0)


@pytest.mark.parametrize("method", ["post", "options", "put", "delete", "patch"])
def test_other_methods_are_not_allowed(client, delivery, method):
    for path in (pixel_path(delivery.pk), click_path(delivery.pk)):
        response = getattr(client, method)(path)
        assert response.status_code == 405
        assert response["Allow"] == "GET, HEAD"
    assert recorded() == []


def test_a_10_kb_token_is_refused_fast(client, delivery, django_assert_num_queries):
    path = links.CLICK_PATH.format(token="A" * 5_000 + "." + "B" * 5_000 + ".CCCC")
    started = time.perf_counter()
    with django_assert_num_queries(0):
        response = client.get(path)
    assert time.perf_counter() - started < 0.5
    assert response.status_code == 404


@pytest.mark.parametrize("path", ["/c/caf\u00e9.abc.def", "/c/%C3%A9t%C3%A9.a.b", "/c/\u2603"])
def test_non_ascii_paths_are_refused(client, delivery, path, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get(path)
    assert response.status_code == 404
    assert_pixel(client.get("/o/caf\u00e9.gif"))
    assert recorded() == []


def test_unknown_hosts_are_refused(delivery):
    stranger = Client(HTTP_HOST="evil.example")
    assert stranger.get(pixel_path(delivery.pk)).status_code == 400
    assert stranger.get(click_path(delivery.pk)).status_code == 400
    assert recorded() == []


def test_a_verified_tracking_host_is_admitted(delivery, campaign, django_assert_num_queries):
    SendingDomain.objects.create(
        workspace=campaign.workspace,
        domain="shop.example",
        tracking_subdomain="go",
        status=SendingDomain.Status.VERIFIED,
    )
    SendingDomain.objects.create(
        workspace=campaign.workspace,
        domain="pending.example",
        status=SendingDomain.Status.PENDING,
    )
    SendingDomain.objects.create(  # verified once: its mail out there links to it
        workspace=campaign.workspace,
        domain="broken.example",
        status=SendingDomain.Status.FAILING,
    )
    branded = Client(HTTP_HOST="go.shop.example")
    assert_pixel(branded.get(pixel_path(delivery.pk)))
    assert branded.get(click_path(delivery.pk)).status_code == 302  # the newest delivery read
    with django_assert_num_queries(0):  # the hosts are cached
        response = branded.get(click_path(delivery.pk))
    assert (response.status_code, response["Location"]) == (302, TARGET)
    assert Client(HTTP_HOST="GO.shop.example:443").get(click_path(delivery.pk)).status_code == 302
    assert Client(HTTP_HOST="links.pending.example").get(pixel_path(delivery.pk)).status_code == (
        400
    )
    assert Client(HTTP_HOST="links.broken.example").get(pixel_path(delivery.pk)).status_code == (
        200
    )
    assert [kind for _, kind, *_ in recorded()] == ["open", "click", "click", "click", "open"]


def test_tracking_hosts_are_read_again_after_the_cache_time(delivery, campaign, settings):
    settings.TRACKING_HOSTS_CACHE_SECONDS = 0
    domain = SendingDomain.objects.create(
        workspace=campaign.workspace,
        domain="shop.example",
        status=SendingDomain.Status.VERIFIED,
    )
    branded = Client(HTTP_HOST="links.shop.example")
    assert branded.get(pixel_path(delivery.pk)).status_code == 200
    domain.status = SendingDomain.Status.PENDING
    domain.save(update_fields=["status"])
    assert branded.get(pixel_path(delivery.pk)).status_code == 400


def test_a_campaign_that_does_not_track_records_nothing_but_links_still_work(client, workspace):
    quiet = campaign_make(workspace, track_opens=False, track_clicks=False)
    delivery = delivery_make(quiet)
    assert_pixel(client.get(pixel_path(delivery.pk)))
    response = client.get(click_path(delivery.pk))
    assert (response.status_code, response["Location"]) == (302, TARGET)
    assert recorded() == []
    assert not DeliveryActivity.objects.exists()


def test_a_link_of_a_delivery_never_made_is_refused(client, delivery, django_assert_num_queries):
    with django_assert_num_queries(1):  # the newest delivery, looked up once
        response = client.get(click_path(delivery.pk + 1000))
    assert response.status_code == 404
    assert "Location" not in response
    newer = delivery_make(delivery.campaign)  # made since: looked up again, and followed
    response = client.get(click_path(newer.pk))
    assert (response.status_code, response["Location"]) == (302, TARGET)
    with django_assert_num_queries(0):  # known now
        assert client.get(click_path(delivery.pk)).status_code == 302
    assert [delivery_id for delivery_id, *_ in recorded()] == [newer.pk, delivery.pk]


def test_a_deleted_deliverys_links_still_reach_their_signed_target_and_record_nothing(
    client, delivery
):
    """Mail already delivered keeps working links after its campaign is deleted: the
    target is the one the token signs (no open redirect), and nothing is kept of the hit."""
    pixel, click = pixel_path(delivery.pk), click_path(delivery.pk)
    delivery.delete()
    assert_pixel(client.get(pixel))
    response = client.get(click)
    assert (response.status_code, response["Location"]) == (302, TARGET)
    assert recorded() == []
    assert not PendingHit.objects.exists()


def test_an_unsent_deliverys_hits_are_not_recorded(client, campaign):
    queued = delivery_make(campaign, state="queued")
    assert_pixel(client.get(pixel_path(queued.pk)))
    assert client.get(click_path(queued.pk)).status_code == 302
    assert recorded() == []


def test_a_database_failure_still_answers_and_the_hits_wait_in_the_spool_until_it_heals(
    client, delivery, failing_database
):
    assert_pixel(client.get(pixel_path(delivery.pk)))
    response = client.get(click_path(delivery.pk))
    assert (response.status_code, response["Location"]) == (302, TARGET)
    with pytest.raises(DatabaseError, match="disk on fire"):
        spool_flush()
    assert not PendingHit.objects.exists()
    failing_database()  # healed
    assert [kind for _, kind, *_ in recorded()] == ["open", "click"]


def test_event_keys_are_unique_across_threads_and_processes():
    keys: list = []

    def draw() -> None:
        keys.extend(event_key_new() for _ in range(2000))

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked process draws from a prefix of its own
        try:
            os.write(write, "\n".join(str(event_key_new()) for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        from_child = {uuid.UUID(line) for line in pipe.read().split()}
    assert len(set(keys)) == len(keys) == 16000
    assert len(from_child) == 100
    assert not from_child & set(keys)
    assert {key.version for key in keys} == {4}


def test_other_paths_go_through_the_stack(client):
    response = client.get("/healthz")
    assert response.status_code in (200, 503)
    assert Client(HTTP_HOST="evil.example").get("/accounts/login/").status_code == 400


def wsgi_get(path: str, *, method: str = "GET", host: str = "localhost") -> tuple:
    """The production entry point (espsite.wsgi.application) called as gunicorn calls
    it: (status line, headers, body)."""
    from espsite.wsgi import application

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "HTTP_HOST": host,
        "HTTP_USER_AGENT": BROWSER,
        "REMOTE_ADDR": "198.51.100.23",
    }
    setup_testing_defaults(environ)
    started = {}

    def start_response(status, headers, exc_info=None):
        started.update(status=status, headers=dict(headers))

    body = b"".join(application(environ, start_response))
    return started["status"], started["headers"], body


def test_the_wsgi_entry_point_answers_like_the_middleware_before_django_runs(client, delivery):
    status, headers, body = wsgi_get(pixel_path(delivery.pk))
    assert (status, body) == ("200 OK", PIXEL)
    assert headers == {**NO_CACHE, "Content-Type": "image/gif", "Content-Length": "43"}
    status, headers, body = wsgi_get(click_path(delivery.pk))
    assert (status, headers["Location"], body) == ("302 Found", TARGET, b"")
    status, headers, body = wsgi_get(pixel_path(delivery.pk), method="HEAD")
    assert (status, headers["Content-Length"], body) == ("200 OK", "43", b"")
    assert recorded() == [
        (delivery.pk, "open", "", "GET", ""),
        (delivery.pk, "click", TARGET, "GET", ""),
        (delivery.pk, "open", "", "HEAD", "head_request"),
    ]

    forged = click_path(delivery.pk)[:-3] + "AAA"
    for path, method, host in (
        (forged, "GET", "localhost"),
        (pixel_path(delivery.pk), "POST", "localhost"),
        (pixel_path(delivery.pk), "GET", "evil.example"),
        ("/o/\u00e9t\u00e9.gif", "GET", "localhost"),
    ):
        status, headers, body = wsgi_get(path, method=method, host=host)
        response = getattr(client, method.lower())(path, HTTP_HOST=host)
        assert int(status.split()[0]) == response.status_code, (path, method, host)
        assert body == response.content
        assert headers.items() <= dict(response.items()).items()
    assert recorded() == [
        (delivery.pk, "open", "", "GET", ""),
        (delivery.pk, "click", TARGET, "GET", ""),
        (delivery.pk, "open", "", "HEAD", "head_request"),
    ]
    # Any other path is Django's.
    status, _, _ = wsgi_get("/healthz")
    assert status.split()[0] in ("200", "503")
