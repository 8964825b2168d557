import pytest

from accounts.audit import audit_record
from accounts.models import AuditEntry
from tests.factories import UserFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


def test_audit_entries_are_append_only():
    entry = audit_record(workspace=WorkspaceFactory(), actor=UserFactory(), verb="thing.done")
    entry.verb = "thing.undone"
    with pytest.raises(TypeError):
        entry.save()
    with pytest.raises(TypeError):
        entry.delete()
    with pytest.raises(TypeError):
        AuditEntry.objects.filter(pk=entry.pk).update(verb="x")
    with pytest.raises(TypeError):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get(pk=entry.pk).verb == "thing.done"


def test_audit_entry_names_actor_and_target_and_survives_actor_deletion():
    workspace, actor = WorkspaceFactory(), UserFactory(email="actor@example.com")
    entry = audit_record(
        workspace=workspace, actor=actor, verb="workspace.touched", target=workspace
    )
    assert (entry.target_type, entry.target_id) == ("accounts.Workspace", str(workspace.pk))
    actor.delete()
    entry = AuditEntry.objects.get(pk=entry.pk)
    assert entry.actor is None
    assert entry.actor_label == "actor@example.com"
