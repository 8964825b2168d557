"""Demo audience for `manage.py seed_demo`: lists, fields, contacts brought in by a real import."""

import io
import random

from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from accounts.models import User, Workspace
from contacts.models import ContactImport, ContactList, Field, Segment, SignupForm, Suppression
from contacts.segments.services import segment_create
from contacts.services.import_run import contact_import_run
from contacts.services.imports import contact_import_start, contact_import_upload
from contacts.services.signup import signup_form_create
from contacts.services.suppressions import suppression_add

DEMO_IMPORT_NAME = "demo-customers.csv"
FIRST = ["Alex", "Billie", "Casey", "Dana", "Eli", "Frankie", "Gus", "Harper", "Ira", "Jo", "Kai"]
LAST = [
    "Berg",
    "Costa",
    "Dubois",
    "Evans",
    "Fischer",
    "García",
    "Hughes",
    "Ito",
    "Jensen",
    "Kowalski",
]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "gmx.de", "example.org"]


def _csv(rows: int) -> bytes:
    rng = random.Random(7)  # noqa: S311 (demo data, not secrets)
    out = io.StringIO()
    out.write("email,first name,last name,plan,orders,customer since,vip\r\n")
    for n in range(rows):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        out.write(
            f"{first.lower()}.{last.lower()}{n}@{rng.choice(DOMAINS)},{first},{last},"
            f"{rng.choice(['free', 'pro', 'team'])},{rng.randint(0, 40)},"
            f"{rng.randint(2019, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},"
            f"{'yes' if rng.random() < 0.1 else 'no'}\r\n"
        )
    out.write("not-an-address,Broken,Row,free,1,2024-01-01,no\r\n")
    return out.getvalue().encode()


@transaction.atomic
def contacts_demo_seed(*, workspace: Workspace, user: User, rows: int = 240) -> None:
    """Idempotent: the demo import runs once per workspace."""
    newsletter, _ = ContactList.objects.get_or_create(
        workspace=workspace,
        name="Newsletter",
        defaults={"description": "Monthly stories and offers.", "opt_in": "double"},
    )
    ContactList.objects.get_or_create(
        workspace=workspace,
        name="Product updates",
        defaults={"description": "Release notes, a few times a year.", "opt_in": "single"},
    )
    for key, label, type_, choices in [
        ("plan", "Plan", Field.Type.CHOICE, ["free", "pro", "team"]),
        ("orders", "Orders", Field.Type.NUMBER, []),
        ("customer_since", "Customer since", Field.Type.DATE, []),
        ("vip", "VIP", Field.Type.BOOLEAN, []),
    ]:
        Field.objects.get_or_create(
            workspace=workspace,
            key=key,
            defaults={"label": label, "type": type_, "choices": choices},
        )
    if not Segment.objects.for_workspace(workspace).filter(name="Loyal pro customers").exists():
        segment_create(
            workspace=workspace,
            name="Loyal pro customers",
            description="Pro plan, more than 10 orders, on the newsletter.",
            definition={
                "op": "and",
                "rules": [
                    {"field": "attr:plan", "operator": "is", "value": "pro"},
                    {"field": "attr:orders", "operator": "gt", "value": 10},
                    {"field": "list", "operator": "any", "value": newsletter.pk},
                ],
            },
            acting_user=user,
        )
    if not SignupForm.objects.for_workspace(workspace).exists():
        signup_form_create(
            workspace=workspace,
            acting_user=user,
            contact_list=newsletter,
            name="Website footer",
            title="Get our monthly newsletter",
            intro="Trail stories, gear tests and members-only offers. No spam, ever.",
        )
    if (
        ContactImport.objects.for_workspace(workspace)
        .filter(original_name=DEMO_IMPORT_NAME)
        .exists()
    ):
        return
    suppression_add(
        workspace=workspace,
        email="complained@example.org",
        reason=Suppression.Reason.COMPLAINT,
        source="demo",
        acting_user=None,
    )
    contact_import = contact_import_upload(
        workspace=workspace,
        upload=SimpleUploadedFile(DEMO_IMPORT_NAME, _csv(rows), content_type="text/csv"),
        acting_user=user,
    )
    contact_import_start(
        contact_import=contact_import,
        mapping={
            "0": "email",
            "1": "first_name",
            "2": "last_name",
            "3": "attr:plan",
            "4": "attr:orders",
            "5": "attr:customer_since",
            "6": "attr:vip",
        },
        list_ids=[newsletter.pk],
        update_existing=True,
        consent_basis="Ticked 'Send me the newsletter' at checkout",
        consent_source="Demo web shop checkout",
        acting_user=user,
    )
    # Inline: the demo must be complete when seed_demo returns, worker or not.
    contact_import_run(import_id=contact_import.pk)
