"""Write the exact message a contact would receive from a campaign, for inspection by hand
or with a spam filter (`spamassassin -t < message.eml`)."""

import sys
from pathlib import Path
from typing import TextIO

from django.core.management.base import BaseCommand, CommandError

from campaigns.models import Campaign
from campaigns.outgoing import (
    InvalidFromAddress,
    campaign_message_bytes,
)
from campaigns.preview import PreviewError, campaign_preview
from campaigns.rendering import ContextError, TemplateError
from contacts.addresses import InvalidAddress, normalize_email
from contacts.models import Contact


class Command(BaseCommand):
    help = (
        "Write the RFC 5322 message that CONTACT would receive from campaign CAMPAIGN_ID "
        "(headers, parts, signed links; tracked links and DKIM once sending adds them) "
        "to FILE or standard output."
    )

    def add_arguments(self, parser):
        parser.add_argument("campaign_id", type=int, metavar="CAMPAIGN_ID")
        parser.add_argument(
            "--contact", required=True, metavar="EMAIL", help="the recipient's address"
        )
        parser.add_argument("--out", metavar="FILE", help="write here instead of stdout")

    def handle(self, *args, campaign_id: int, contact: str, out: str | None, **options):
        # An operator's tool: any workspace's campaign, the contact looked up inside it.
        campaign = (
            Campaign.objects.select_related("workspace", "template").filter(pk=campaign_id).first()
        )
        if campaign is None:
            raise CommandError(f"No campaign with id {campaign_id}.")
        recipient = self._contact(campaign, contact)
        try:
            raw = campaign_message_bytes(campaign=campaign, contact=recipient)
        except TemplateError as error:
            raise CommandError(_compile_problem(campaign, error)) from None
        except (ContextError, InvalidFromAddress) as error:
            raise CommandError(f"Campaign {campaign.pk} cannot be rendered: {error}") from None
        if out:
            try:
                Path(out).write_bytes(raw)
            except OSError as error:
                raise CommandError(f"Cannot write {out}: {error.strerror}.") from None
            self.stderr.write(f"Wrote {len(raw)} bytes to {out}.")
        else:
            _write_binary(options.get("stdout") or sys.stdout, raw)

    def _contact(self, campaign: Campaign, address: str) -> Contact:
        missing = CommandError(
            f"No contact {address!r} in workspace {campaign.workspace.slug!r} "
            f"(campaign {campaign.pk})."
        )
        try:
            email = normalize_email(address)
        except InvalidAddress:
            raise missing from None
        found = (
            Contact.objects.for_workspace(campaign.workspace).filter(email__iexact=email).first()
        )
        if found is None:
            raise missing
        return found


def _write_binary(stream: TextIO, raw: bytes) -> None:
    """The bytes as they are (8-bit parts, CRLF) to a real stream's buffer; a text-only
    stream (call_command(stdout=StringIO())) gets them decoded losslessly."""
    binary = getattr(stream, "buffer", None)
    if binary is None:
        stream.write(raw.decode("utf-8", errors="surrogateescape"))
        return
    stream.flush()
    binary.write(raw)
    binary.flush()


def _compile_problem(campaign: Campaign, error: TemplateError) -> str:
    """Where the campaign fails to compile, by part as the editor shows it: the error's own
    line counts lines of the layout and body put together."""
    preview = campaign_preview(
        workspace=campaign.workspace,
        subject=campaign.subject,
        preheader=campaign.preheader,
        html=campaign.html,
        text=campaign.text,
        layout=campaign.template.html if campaign.template_id else None,
        contact=None,
    )
    problems = preview.errors or [
        PreviewError(part="Message", message=error.message, line=error.line, column=error.column)
    ]
    return f"Campaign {campaign.pk} does not compile: " + "; ".join(
        f"{problem.part}"
        + (f" at line {problem.line}, column {problem.column}" if problem.line else "")
        + f": {problem.message}"
        for problem in problems
    )
