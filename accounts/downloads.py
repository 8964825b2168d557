"""Private files: served only through views that check the workspace, or signed links."""

from pathlib import PurePosixPath

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404

from accounts.models import Workspace
from accounts.tokens import download_token_make


def workspace_file_prefix(*, workspace: Workspace) -> str:
    return f"workspaces/{workspace.pk}/"


def workspace_file_name(*, workspace: Workspace, relative: str) -> str:
    """The storage name of a workspace's file; refuses paths that climb out of it."""
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"Unsafe file name: {relative!r}")
    return workspace_file_prefix(workspace=workspace) + str(path)


def file_response(*, name: str, download_name: str | None = None) -> FileResponse:
    if not default_storage.exists(name):
        raise Http404("No such file.")
    return FileResponse(
        default_storage.open(name, "rb"),
        as_attachment=True,
        filename=download_name or PurePosixPath(name).name,
    )


def workspace_file_response(
    *, workspace: Workspace, name: str, download_name: str | None = None
) -> FileResponse:
    """Stream a file of this workspace; a name outside it is the same 404 as a missing one."""
    if not name.startswith(workspace_file_prefix(workspace=workspace)) or ".." in name:
        raise Http404("No such file.")
    return file_response(name=name, download_name=download_name)


def signed_download_path(*, name: str) -> str:
    """A path that downloads `name` without a session until the link expires."""
    return f"/files/{download_token_make(name=name)}/"
