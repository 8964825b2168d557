import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.http import Http404

from accounts.downloads import (
    signed_download_path,
    workspace_file_name,
    workspace_file_response,
)
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db


def _store(workspace, relative: str, content: bytes = b"email\na@example.com\n") -> str:
    return default_storage.save(
        workspace_file_name(workspace=workspace, relative=relative), ContentFile(content)
    )


def test_workspace_file_is_streamed_as_attachment():
    workspace = WorkspaceFactory()
    name = _store(workspace, "exports/contacts.csv")
    response = workspace_file_response(workspace=workspace, name=name)
    assert response["Content-Disposition"].startswith("attachment")
    assert b"".join(response.streaming_content) == b"email\na@example.com\n"


def test_file_of_another_workspace_is_404():
    mine, theirs = WorkspaceFactory(), WorkspaceFactory()
    name = _store(theirs, "exports/contacts.csv")
    with pytest.raises(Http404):
        workspace_file_response(workspace=mine, name=name)


@pytest.mark.parametrize("relative", ["../1/x.csv", "/etc/passwd", "a/../../b", ""])
def test_unsafe_names_are_refused(relative):
    with pytest.raises(ValueError, match="Unsafe"):
        workspace_file_name(workspace=WorkspaceFactory(), relative=relative)


def test_signed_link_downloads_without_session_until_it_expires(client, settings):
    name = _store(WorkspaceFactory(), "exports/person.zip", b"PK zip bytes")
    path = signed_download_path(name=name)
    response = client.get(path)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"PK zip bytes"
    settings.DOWNLOAD_LINK_MAX_AGE_SECONDS = -1
    assert client.get(path).status_code == 404


def test_tampered_signed_link_is_404(client):
    name = _store(WorkspaceFactory(), "exports/person.zip")
    path = signed_download_path(name=name)
    token = path.split("/")[2]
    assert client.get(f"/files/{token[:-2]}xx/").status_code == 404
    assert client.get("/files/not-a-token/").status_code == 404


def test_media_files_have_no_public_url(client, settings):
    name = _store(WorkspaceFactory(), "exports/contacts.csv")
    assert not settings.MEDIA_URL or settings.MEDIA_URL == "/"
    assert client.get(f"/media/{name}").status_code == 404
