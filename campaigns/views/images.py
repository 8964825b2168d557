"""The media library: upload images, give them alternative text, copy their URLs, delete."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.html import format_html
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.errors import ApplicationError
from accounts.models import Role
from accounts.scoping import WorkspaceRequest, workspace_view
from campaigns import images
from campaigns.forms import ImageAltForm, ImageUploadForm
from campaigns.models import MediaImage

# Room for the multipart envelope around the file itself.
_MULTIPART_OVERHEAD_BYTES = 64 * 1024
# The width a pasted image is shown at: the usual width of an email's body.
_SNIPPET_WIDTH = 600


def _list_page(
    request: WorkspaceRequest, form: ImageUploadForm, *, status: int = 200, refusal: str = ""
) -> HttpResponse:
    library = [
        (image, images.image_public_path(image=image, width=min(images.VARIANT_WIDTHS)))
        for image in images.image_list(workspace=request.workspace)
    ]
    return render(
        request,
        "campaigns/image_list.html",
        {
            "library": library,
            "form": form,
            "refusal": refusal,
            "can_edit": request.membership.has_role(Role.EDITOR),
            "max_bytes": images.upload_limits().max_bytes,
        },
        status=status,
    )


@csrf_exempt  # checked below, once the size is known to be acceptable
@workspace_view()
@require_http_methods(["GET", "POST"])
def image_list(request: WorkspaceRequest) -> HttpResponse:
    """An upload over the limit is refused from its Content-Length, before it is read."""
    if request.method == "POST":
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > images.upload_limits().max_bytes + _MULTIPART_OVERHEAD_BYTES:
            return _list_page(
                request, ImageUploadForm(), status=413, refusal=images.too_large_message()
            )
    return _image_list(request)


@csrf_protect
def _image_list(request: WorkspaceRequest) -> HttpResponse:
    form = ImageUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            image = images.image_upload(
                workspace=request.workspace,
                upload=form.cleaned_data["file"],
                acting_user=request.user,
            )
        except ApplicationError as error:
            form.add_error("file", error.message)
        else:
            messages.success(request, f"{image.name} is in the library.")
            return redirect(
                "campaigns:image_detail",
                workspace_slug=request.workspace.slug,
                image_id=image.pk,
            )
    return _list_page(request, form, status=400 if form.errors else 200)


def _snippet(image: MediaImage) -> str:
    width = min(image.width, _SNIPPET_WIDTH)
    return format_html(
        '<img src="{}" alt="{}" width="{}" '
        'style="display:block;max-width:100%;height:auto;border:0">',
        images.image_public_url(image=image, width=_SNIPPET_WIDTH),
        image.alt_text,
        width,
    )


@workspace_view()
@require_http_methods(["GET", "POST"])
def image_detail(request: WorkspaceRequest, image_id: int) -> HttpResponse:
    image = images.image_get(workspace=request.workspace, image_id=image_id)
    form = ImageAltForm(request.POST or None, initial={"alt_text": image.alt_text})
    if request.method == "POST" and form.is_valid():
        images.image_update_alt(
            image=image, alt_text=form.cleaned_data["alt_text"], acting_user=request.user
        )
        messages.success(request, "Alternative text saved.")
        return redirect(
            "campaigns:image_detail", workspace_slug=request.workspace.slug, image_id=image.pk
        )
    return render(
        request,
        "campaigns/image_detail.html",
        {
            "image": image,
            "form": form,
            "copies": images.image_public_copies(image=image),
            "preview_path": images.image_public_path(image=image, width=max(images.VARIANT_WIDTHS)),
            "snippet": _snippet(image),
            "can_edit": request.membership.has_role(Role.EDITOR),
        },
        status=400 if form.errors else 200,
    )


@workspace_view(Role.EDITOR)
@require_POST
def image_delete(request: WorkspaceRequest, image_id: int) -> HttpResponse:
    image = images.image_get(workspace=request.workspace, image_id=image_id)
    images.image_delete(image=image, acting_user=request.user)
    messages.success(request, f"{image.name} is deleted; campaigns that show it lose the image.")
    target = redirect("campaigns:image_list", workspace_slug=request.workspace.slug)
    if request.htmx:
        return HttpResponseClientRedirect(target.url)
    return target
