"""Footer policy: what every campaign must carry before a workspace may send it.

CAN-SPAM wants a postal address and a working opt-out in every commercial mail; the
campaign renderer fills the placeholders below with the links of compliance/tokens.py.
"""

import re

from accounts.models import Workspace

UNSUBSCRIBE_PLACEHOLDER = "{{ unsubscribe_url }}"
PREFERENCES_PLACEHOLDER = "{{ preferences_url }}"
POSTAL_ADDRESS_PLACEHOLDER = "{{ postal_address }}"
# Either link lets the person opt out (the preference center has "unsubscribe from all").
OPT_OUT_PLACEHOLDERS = (UNSUBSCRIBE_PLACEHOLDER, PREFERENCES_PLACEHOLDER)

_OPT_OUT = re.compile(r"\{\{\s*(?:unsubscribe_url|preferences_url)\s*\}\}")

NO_POSTAL_ADDRESS = "Add your postal address in the workspace settings: every email shows it."
NO_OPT_OUT_LINK = (
    f"Add an unsubscribe link to the template: {UNSUBSCRIBE_PLACEHOLDER} "
    f"(or {PREFERENCES_PLACEHOLDER})."
)


def footer_problems(*, workspace: Workspace, html: str | None = None) -> list[str]:
    """What stops this workspace (and this template or body, when given) from sending."""
    problems = []
    if not workspace.postal_address.strip():
        problems.append(NO_POSTAL_ADDRESS)
    if html is not None and not _OPT_OUT.search(html):
        problems.append(NO_OPT_OUT_LINK)
    return problems


def workspace_may_send(*, workspace: Workspace, html: str | None = None) -> bool:
    """True when the footer policy holds for the workspace (and the body, when given)."""
    return not footer_problems(workspace=workspace, html=html)
