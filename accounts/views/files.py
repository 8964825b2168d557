from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_GET

from accounts.downloads import file_response
from accounts.tokens import download_token_read


@require_GET
def signed_download(request: HttpRequest, token: str) -> FileResponse:
    """A private file for whoever holds an unexpired signed link (export mails, for one)."""
    name = download_token_read(token, max_age_seconds=settings.DOWNLOAD_LINK_MAX_AGE_SECONDS)
    if name is None:
        raise Http404("This download link is not valid or has expired.")
    return file_response(name=name)
