from celery import shared_task


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=8)
def system_mail_send_task(
    *,
    subject: str,
    text: str,
    html: str,
    to: list[str],
    from_email: str | None = None,
    reply_to: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> None:
    """Deliver a rendered system message; connection failures are retried with back-off."""
    from accounts.mail import mail_deliver

    mail_deliver(
        subject=subject,
        text=text,
        html=html,
        to=to,
        from_email=from_email,
        reply_to=reply_to,
        headers=headers,
    )
