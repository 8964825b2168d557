import pytest


@pytest.fixture
def row_counts():
    """Counts of every table these pages may write, to prove a request wrote nothing."""
    from accounts.models import AuditEntry
    from contacts.models import ConsentRecord, Subscription, Suppression

    def counts() -> dict:
        return {
            "consent": ConsentRecord.objects.count(),
            "suppressions": Suppression.objects.count(),
            "unsubscribed": Subscription.objects.filter(status="unsubscribed").count(),
            "audit": AuditEntry.objects.count(),
        }

    return counts
