"""Isolation cases of the media library pages (see tests/accounts/test_isolation.py)."""

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from accounts.models import Role
from campaigns import images


def _image(ws) -> dict:
    out = io.BytesIO()
    Image.new("RGB", (20, 20), (0, 90, 200)).save(out, "PNG")
    image = images.image_upload(
        workspace=ws,
        upload=SimpleUploadedFile("isolation.png", out.getvalue(), content_type="image/png"),
        acting_user=None,
    )
    return {"image_id": image.pk}


CASES = {
    "campaigns:image_list": (lambda ws: {}, "get", None, False, Role.VIEWER),
    "campaigns:image_detail": (_image, "get", None, False, Role.VIEWER),
    "campaigns:image_delete": (_image, "post", None, True, Role.EDITOR),
}
