from celery import shared_task


@shared_task(acks_late=True)
def ping_task(payload: str = "ping") -> str:
    """Echo, for checking that a worker answers through the broker."""
    return f"pong:{payload}"


@shared_task(acks_late=True)
def heartbeat_prune_task() -> int:
    from espsite.health import heartbeat_prune

    return heartbeat_prune()
