from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.scoping import WorkspaceRequest, workspace_view


@workspace_view()
@require_GET
def overview(request: WorkspaceRequest) -> HttpResponse:
    return render(request, "sending/overview.html")
