from accounts.models import User
from contacts.models import ConsentRecord, Contact, ContactList


def consent_record_add(
    *,
    contact: Contact,
    action: str,
    method: str,
    contact_list: ContactList | None = None,
    purpose: str = "",
    source: str = "",
    campaign_id: int | None = None,
    campaign_name: str = "",
    ip: str | None = None,
    user_agent: str = "",
    consent_text: str = "",
    actor: User | None = None,
) -> ConsentRecord:
    """Append one consent record (records are never edited or deleted)."""
    return ConsentRecord.objects.create(
        workspace_id=contact.workspace_id,
        contact=contact,
        contact_list=contact_list,
        purpose=purpose[:120],
        action=ConsentRecord.Action(action),
        method=ConsentRecord.Method(method),
        source=source[:500],
        campaign_id=campaign_id,
        campaign_name=campaign_name[:200],
        email=contact.email,
        ip=ip,
        user_agent=(user_agent or "")[:500],
        consent_text=consent_text,
        actor=actor if actor is not None and actor.pk else None,
    )
