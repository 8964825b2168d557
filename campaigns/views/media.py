"""The media library's images as mail clients fetch them: public, by signed token."""

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.http import require_safe

from campaigns import images


@require_safe
def image_public(request: HttpRequest, token: str, name: str) -> HttpResponseBase:
    """No session: the token alone grants the image, and is checked before the database."""
    image, stored = images.image_public_file(token=token, name=name)
    if request.method == "HEAD":
        try:
            size = default_storage.size(stored)
        except OSError:
            raise Http404("No such image.") from None
        response: HttpResponseBase = HttpResponse(content_type=image.content_type)
        response["Content-Length"] = str(size)
    else:
        try:
            handle = default_storage.open(stored, "rb")
        except OSError:
            raise Http404("No such image.") from None
        response = FileResponse(handle, content_type=image.content_type)
    response["Content-Disposition"] = f'inline; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    # Even if a browser were made to render the file as a page, nothing in it could run.
    response["Content-Security-Policy"] = "default-src 'none'"
    # Every stored copy is immutable: a new upload gets a new token and path.
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    return response
