"""System mail from templates: <app>/email/<name>_subject.txt, _message.txt, _message.html."""

import contextlib

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string


def templated_mail_send(*, template: str, to: list[str], context: dict) -> None:
    """Render and send one system message through django.core.mail."""
    context = {"base_url": settings.BASE_URL, **context}
    subject = " ".join(render_to_string(f"{template}_subject.txt", context).split())
    text = render_to_string(f"{template}_message.txt", context)
    message = EmailMultiAlternatives(subject=subject, body=text, to=to)
    with contextlib.suppress(TemplateDoesNotExist):
        message.attach_alternative(
            render_to_string(f"{template}_message.html", context), "text/html"
        )
    message.send()
