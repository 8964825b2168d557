"""System mail from templates: <app>/email/<name>_subject.txt, _message.txt, _message.html.

Messages are rendered in the request and handed to a worker on the transactional queue
once the transaction commits, so a page never waits on (or reveals) the mail server.
"""

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string


def templated_mail_render(*, template: str, context: dict) -> tuple[str, str, str]:
    """(subject, text, html) of a system message; html is empty when there is no template."""
    context = {"base_url": settings.BASE_URL, **context}
    subject = " ".join(render_to_string(f"{template}_subject.txt", context).split())
    text = render_to_string(f"{template}_message.txt", context)
    try:
        html = render_to_string(f"{template}_message.html", context)
    except TemplateDoesNotExist:
        html = ""
    return subject, text, html


def mail_build(
    *,
    subject: str,
    text: str,
    html: str,
    to: list[str],
    from_email: str | None = None,
    reply_to: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        to=to,
        from_email=from_email,
        reply_to=reply_to,
        headers=headers or {},
    )
    if html:
        message.attach_alternative(html, "text/html")
    return message


def mail_deliver(**parts) -> None:
    """Send one rendered message through django.core.mail (the worker's side)."""
    mail_build(**parts).send()


def mail_enqueue(**parts) -> None:
    """Hand a rendered message (the keyword arguments of mail_build) to the transactional
    lane once the transaction commits. Header injection is refused here, in the caller,
    not later in a worker."""
    from accounts.tasks import system_mail_send_task

    mail_build(**parts).message()  # raises BadHeaderError for a header with a line break
    transaction.on_commit(lambda: system_mail_send_task.delay(**parts))


def templated_mail_send(*, template: str, to: list[str], context: dict) -> None:
    """Render now, send from a worker after commit."""
    subject, text, html = templated_mail_render(template=template, context=context)
    mail_enqueue(subject=subject, text=text, html=html, to=to)
