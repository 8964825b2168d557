"""Demo links for `manage.py seed_demo`: try the public unsubscribe and preference pages."""

from accounts.models import Workspace
from compliance.tokens import preferences_url, unsubscribe_url
from contacts.models import Subscription


def compliance_demo_links(*, workspace: Workspace) -> tuple[str, str] | None:
    """(unsubscribe URL, preference center URL) of one subscribed demo contact, or None."""
    subscription = (
        Subscription.objects.filter(workspace=workspace, status=Subscription.Status.SUBSCRIBED)
        .order_by("contact_id", "contact_list_id")
        .first()
    )
    if subscription is None:
        return None
    ids = {"workspace_id": workspace.pk, "contact_id": subscription.contact_id}
    return (
        unsubscribe_url(**ids, list_id=subscription.contact_list_id),
        preferences_url(**ids),
    )
