"""`manage.py campaign_render`: the exact message a contact would receive, as bytes."""

import email
import email.policy
import io
import os
import re
import subprocess
import sys
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from campaigns import outgoing, services
from campaigns.models import Campaign
from campaigns.starters import starter_get
from compliance.tokens import Purpose, token_read
from tests.factories import ContactFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db

SUBJECT = "🎉 Hello {{ first_name }}"


def _campaign(workspace, **fields) -> Campaign:
    campaign = services.campaign_create(
        workspace=workspace, name="Spring sale", starter=starter_get("plain"), acting_user=None
    )
    services.campaign_update(
        campaign=campaign,
        acting_user=None,
        **{
            "subject": SUBJECT,
            "from_name": "Zoë's Shop",
            "from_email": "news@shop.example",
            "reply_to": "help@shop.example",
            "html": "<p>Hi {{ first_name }}, your plan: {{ attributes.plan }}</p>",
            **fields,
        },
    )
    return campaign


@pytest.fixture
def contact(workspace):
    return ContactFactory(
        workspace=workspace,
        email="Ada@Example.org",
        first_name="Ada",
        attributes={"plan": "Gold"},
    )


def _render(*args, **options) -> bytes:
    out = io.StringIO()
    call_command("campaign_render", *[str(arg) for arg in args], stdout=out, **options)
    return out.getvalue().encode("utf-8", errors="surrogateescape")


def _parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_message_has_every_header_and_both_parts(workspace, contact):
    campaign = _campaign(workspace)
    message = _parse(_render(campaign.pk, contact="ada@example.org"))

    assert message["From"].addresses[0].display_name == "Zoë's Shop"
    assert message["From"].addresses[0].addr_spec == "news@shop.example"
    assert message["To"] == "Ada@Example.org"
    assert message["Reply-To"] == "help@shop.example"
    assert message["Subject"] == "🎉 Hello Ada"
    assert message["MIME-Version"] == "1.0"
    assert parsedate_to_datetime(message["Date"]) is not None
    assert message["Message-ID"].startswith("<")
    assert message["Message-ID"].endswith("@shop.example>")
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",)).get_content()
    rich = message.get_body(("html",)).get_content()
    assert "Hi Ada, your plan: Gold" in plain
    assert "<p>Hi Ada, your plan: Gold</p>" in rich
    assert "1 Test Street" in rich


def test_subject_is_rfc2047_encoded_and_lines_end_in_crlf(workspace, contact, tmp_path):
    campaign = _campaign(workspace)
    out = tmp_path / "message.eml"
    call_command("campaign_render", str(campaign.pk), contact=contact.email, out=str(out))
    raw = out.read_bytes()

    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert headers.isascii()
    subject_line = next(line for line in headers.split(b"\r\n") if line.startswith(b"Subject:"))
    assert b"=?utf-8?" in subject_line.lower()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert _parse(raw)["Subject"] == "🎉 Hello Ada"


def test_list_unsubscribe_is_a_one_click_link_of_that_contact(workspace, contact):
    campaign = _campaign(workspace)
    message = _parse(_render(campaign.pk, contact=contact.email))

    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header = message["List-Unsubscribe"].strip()  # a long value is folded before the "<"
    assert header.startswith("<")
    assert header.endswith(">")
    path = urlsplit(header[1:-1]).path
    assert path.startswith("/u/")
    claim = token_read(path.removeprefix("/u/"), purpose=Purpose.UNSUBSCRIBE)
    assert (claim.workspace_id, claim.contact_id, claim.campaign_id) == (
        workspace.pk,
        contact.pk,
        campaign.pk,
    )
    assert header[1:-1] in message.get_body(("html",)).get_content()


def test_out_writes_the_same_message_as_stdout(workspace, contact, tmp_path):
    campaign = _campaign(workspace)
    out = tmp_path / "message.eml"
    call_command("campaign_render", str(campaign.pk), contact=contact.email, out=str(out))
    from_file = _parse(out.read_bytes())
    from_stdout = _parse(_render(campaign.pk, contact=contact.email))
    assert from_file["Subject"] == from_stdout["Subject"]

    def text(message) -> str:  # signed links carry the second they were made
        return re.sub(r"/[upv]/[^\s)>\]]+", "/<token>", message.get_body(("plain",)).get_content())

    assert text(from_file) == text(from_stdout)


def test_stdout_gets_the_bytes_unchanged(workspace, contact, tmp_path):
    campaign = _campaign(workspace, html="<p>Grüße, {{ first_name }} 👋</p>")
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    call_command("campaign_render", str(campaign.pk), contact=contact.email, stdout=stdout)
    raw = stdout.buffer.getvalue()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    html_part = _parse(raw).get_body(("html",)).get_content()
    assert "<p>Grüße, Ada 👋</p>" in html_part


@pytest.mark.django_db(transaction=True)
def test_manage_py_writes_the_message_to_stdout_and_errors_to_stderr(workspace, contact):
    campaign = _campaign(workspace)
    database = connection.settings_dict
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": (
            f"postgres://{database['USER'] or 'postgres'}@{database['HOST'] or '127.0.0.1'}:"
            f"{database['PORT'] or 5432}/{database['NAME']}"
        ),
    }
    root = Path(__file__).resolve().parents[2]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "campaign_render", *args],
            cwd=root,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )

    done = run(str(campaign.pk), "--contact", "ADA@example.org")
    assert done.returncode == 0, done.stderr.decode()
    assert b"\n" not in done.stdout.replace(b"\r\n", b"")
    assert _parse(done.stdout)["Subject"] == "🎉 Hello Ada"

    failed = run(str(campaign.pk), "--contact", "nobody@example.org")
    assert failed.returncode == 1
    assert failed.stdout == b""
    assert b"No contact 'nobody@example.org' in workspace" in failed.stderr
    assert b"Traceback" not in failed.stderr


def test_unknown_campaign_is_a_clear_error(contact):
    with pytest.raises(CommandError, match="No campaign with id 999999"):
        call_command("campaign_render", "999999", contact=contact.email)


def test_contact_must_be_in_the_campaigns_workspace(workspace):
    campaign = _campaign(workspace)
    stranger = ContactFactory(workspace=WorkspaceFactory())
    with pytest.raises(CommandError, match=r"No contact '.*' in workspace"):
        call_command("campaign_render", str(campaign.pk), contact=stranger.email)
    with pytest.raises(CommandError, match="No contact 'not an address'"):
        call_command("campaign_render", str(campaign.pk), contact="not an address")


def test_contact_is_required(workspace):
    campaign = _campaign(workspace)
    with pytest.raises(CommandError, match="--contact"):
        call_command("campaign_render", str(campaign.pk))


def test_template_that_does_not_compile_names_line_and_column(workspace, contact):
    campaign = _campaign(workspace)
    Campaign.objects.filter(pk=campaign.pk).update(html="<p>\n<b>{{ first_name|nope }}</b>")
    with pytest.raises(
        CommandError, match=r"does not compile: HTML body at line 2, column 4: Unknown filter"
    ):
        call_command("campaign_render", str(campaign.pk), contact=contact.email)


def test_campaign_without_a_from_address_is_a_clear_error(workspace, contact):
    campaign = _campaign(workspace)
    Campaign.objects.filter(pk=campaign.pk).update(from_email="")
    with pytest.raises(CommandError, match="not a valid From address"):
        call_command("campaign_render", str(campaign.pk), contact=contact.email)


def test_message_finishers_run_in_order_on_the_final_message(workspace, contact, monkeypatch):
    seen = []

    def stamp(message, campaign, recipient):
        seen.append((campaign.pk, recipient.pk))
        message["X-Finished"] = "tracked"
        return message

    def sign(message, campaign, recipient):
        message["X-Signed-After"] = message["X-Finished"]
        return message

    monkeypatch.setattr(outgoing, "message_finishers", [stamp, sign])
    campaign = _campaign(workspace)
    message = _parse(_render(campaign.pk, contact=contact.email))
    assert seen == [(campaign.pk, contact.pk)]
    assert message["X-Signed-After"] == "tracked"
