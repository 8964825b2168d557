"""The media library: uploads are checked and re-encoded by Pillow; images are public by token."""

import hashlib
import io
import struct
import zlib

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import ExifTags, Image, ImageCms, ImageSequence, PngImagePlugin

from accounts.errors import ApplicationError
from accounts.models import AuditEntry, Role
from campaigns import images
from campaigns.models import MediaImage
from tests.factories import UserFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db

SVG_WITH_SCRIPT = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(document.cookie)</script><rect width='10' height='10'/></svg>"
)


# Files made with Pillow --------------------------------------------------------------


def _image_bytes(fmt: str = "PNG", size=(40, 30), color=(200, 30, 30), mode="RGB", **save) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, fmt, **save)
    return out.getvalue()


def _upload(data: bytes, name: str = "photo.png", content_type: str = "image/png"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny real PNG whose IHDR is patched to declare another size (CRC fixed up)."""
    data = bytearray(_image_bytes("PNG", size=(8, 8)))
    # Signature (8) + chunk length (4) + b"IHDR" (4), then width and height.
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _jpeg_with_metadata() -> bytes:
    """40x20, red left half and blue right half, stored rotated: EXIF orientation 6."""
    picture = Image.new("RGB", (40, 20), (0, 0, 255))
    picture.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "Canon EOS 5D"
    exif[ExifTags.Base.Orientation] = 6
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (51.0, 30.0, 12.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (0.0, 7.0, 40.0)
    out = io.BytesIO()
    picture.save(out, "JPEG", exif=exif.tobytes(), comment=b"taken at home", quality=95)
    return out.getvalue()


def _stored_bytes(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def _stored_image(name: str) -> Image.Image:
    picture = Image.open(io.BytesIO(_stored_bytes(name)))
    picture.load()
    return picture


def _stored_files(private_storage) -> list:
    return [path for path in private_storage.rglob("*") if path.is_file()]


def _upload_image(workspace, data: bytes | None = None, name: str = "photo.png") -> MediaImage:
    return images.image_upload(
        workspace=workspace,
        upload=_upload(data or _image_bytes(), name=name),
        acting_user=UserFactory(),
    )


def _url(name: str, workspace, **kwargs) -> str:
    return reverse(f"campaigns:{name}", kwargs={"workspace_slug": workspace.slug, **kwargs})


# The service: what is refused ---------------------------------------------------------


def _assert_refused(workspace, data: bytes, name: str, private_storage, *, says: str) -> None:
    with pytest.raises(ApplicationError) as refused:
        images.image_upload(workspace=workspace, upload=_upload(data, name), acting_user=None)
    assert says in refused.value.message
    assert not MediaImage.objects.exists()
    assert _stored_files(private_storage) == []


def test_decompression_bomb_declared_in_the_header_is_refused(workspace, private_storage):
    bomb = _png_declaring(50_000, 50_000)  # 2.5 billion pixels in a file of under 100 bytes
    assert len(bomb) < 200
    _assert_refused(workspace, bomb, "bomb.png", private_storage, says="too many pixels")


def test_single_colour_image_over_the_pixel_limit_is_refused(workspace, private_storage):
    # 49 million pixels of one colour compress to a few tens of kilobytes.
    bomb = _image_bytes("PNG", size=(7000, 7000), mode="1", color=0)
    assert len(bomb) < 100_000
    _assert_refused(workspace, bomb, "flat.png", private_storage, says="too many pixels")


def test_pillow_bomb_warning_is_an_error_even_under_looser_limits(
    workspace, private_storage, settings
):
    # Pillow only warns between one and two times its own limit; that is refused too.
    settings.MEDIA_IMAGE_MAX_PIXELS = 10**9
    settings.MEDIA_IMAGE_MAX_SIDE = 100_000
    assert Image.MAX_IMAGE_PIXELS < 10_000 * 10_000 < 2 * Image.MAX_IMAGE_PIXELS
    bomb = _png_declaring(10_000, 10_000)
    _assert_refused(workspace, bomb, "warned.png", private_storage, says="too many pixels")


def test_image_with_a_side_over_the_limit_is_refused(workspace, private_storage):
    long_strip = _image_bytes("PNG", size=(13_000, 2))  # few pixels, one huge side
    _assert_refused(
        workspace, long_strip, "strip.png", private_storage, says="longer than 12000 pixels"
    )


def test_text_file_with_an_image_extension_is_refused(workspace, private_storage):
    _assert_refused(
        workspace,
        b"just some text, not a picture\n" * 20,
        "photo.png",
        private_storage,
        says="not a JPEG, PNG, GIF or WebP image",
    )


@pytest.mark.parametrize("name", ["image.svg", "image.png"])
def test_svg_with_script_is_refused_whatever_its_name(workspace, private_storage, name):
    _assert_refused(workspace, SVG_WITH_SCRIPT, name, private_storage, says="SVG, XML and HTML")


def test_html_named_as_a_gif_is_refused(workspace, private_storage):
    page = b"<!doctype html><html><body><script>alert(1)</script></body></html>"
    _assert_refused(workspace, page, "cat.gif", private_storage, says="SVG, XML and HTML")


def test_other_image_formats_are_refused(workspace, private_storage):
    bitmap = _image_bytes("BMP")
    _assert_refused(workspace, bitmap, "photo.jpg", private_storage, says="not a JPEG")


def test_file_over_the_size_limit_is_refused(workspace, private_storage, settings):
    settings.MEDIA_IMAGE_MAX_BYTES = 2000
    noisy = Image.effect_noise((200, 200), 64)  # does not compress under the limit
    out = io.BytesIO()
    noisy.save(out, "PNG")
    assert len(out.getvalue()) > 2000
    _assert_refused(workspace, out.getvalue(), "noise.png", private_storage, says="larger than")


def test_truncated_image_is_refused_as_damaged(workspace, private_storage):
    noisy = io.BytesIO()
    Image.effect_noise((300, 300), 64).save(noisy, "PNG")
    truncated = noisy.getvalue()[: len(noisy.getvalue()) // 2]
    _assert_refused(workspace, truncated, "cut.png", private_storage, says="could not be read")


def test_library_count_limit(workspace, private_storage, settings):
    settings.MEDIA_IMAGE_MAX_COUNT = 1
    _upload_image(workspace)
    with pytest.raises(ApplicationError, match="its limit"):
        _upload_image(workspace)
    assert MediaImage.objects.count() == 1


# The service: what is stored ----------------------------------------------------------


def test_upload_records_the_reencoded_original(workspace, private_storage):
    user = UserFactory()
    image = images.image_upload(
        workspace=workspace,
        upload=_upload(_image_bytes("PNG", size=(40, 30)), name="C:\\fakepath\\logo.png"),
        acting_user=user,
    )
    assert (image.name, image.content_type, image.width, image.height) == (
        "logo.png",
        "image/png",
        40,
        30,
    )
    assert image.file_name.startswith(f"workspaces/{workspace.pk}/images/")
    assert image.file_name.endswith("/original.png")
    stored = (private_storage / image.file_name).read_bytes()
    assert image.size_bytes == len(stored)
    assert image.sha256 == hashlib.sha256(stored).hexdigest()
    assert image.variants == {}
    assert image.uploaded_by == user
    entry = AuditEntry.objects.get(verb="image.uploaded")
    assert (entry.workspace, entry.actor, entry.target_id) == (workspace, user, str(image.pk))
    assert entry.details["sha256"] == image.sha256


def test_exif_is_stripped_and_orientation_applied(workspace):
    source = _jpeg_with_metadata()
    with Image.open(io.BytesIO(source)) as original:  # the test file really carries it all
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        assert original.getexif()[ExifTags.Base.Make] == "Canon"
        assert original.info["comment"] == b"taken at home"

    image = _upload_image(workspace, source, name="holiday.jpg")

    stored = _stored_image(image.file_name)
    assert stored.format == "JPEG"
    assert image.content_type == "image/jpeg"
    assert len(stored.getexif()) == 0
    assert "exif" not in stored.info
    assert "comment" not in stored.info
    assert "icc_profile" not in stored.info
    raw = _stored_bytes(image.file_name).lower()
    assert b"canon" not in raw
    assert b"exif" not in raw
    # Orientation 6 means "turn a quarter clockwise": the red left half ends up on top.
    assert (image.width, image.height) == stored.size == (20, 40)
    top, bottom = stored.getpixel((10, 5)), stored.getpixel((10, 35))
    assert top[0] > 200
    assert top[2] < 60
    assert bottom[2] > 200
    assert bottom[0] < 60


def test_png_text_chunks_and_colour_profile_are_stripped_and_alpha_kept(workspace):
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret note")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>author</x:xmpmeta>")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = _image_bytes(
        "PNG", size=(30, 30), mode="RGBA", color=(0, 128, 0, 100), pnginfo=info, icc_profile=srgb
    )
    with Image.open(io.BytesIO(source)) as original:
        assert original.info["icc_profile"] == srgb
        assert original.info["Comment"] == "secret note"
    image = _upload_image(workspace, source, name="badge.png")
    stored = _stored_image(image.file_name)
    raw = _stored_bytes(image.file_name)
    assert b"secret note" not in raw
    assert b"xmpmeta" not in raw
    assert not {"Comment", "XML:com.adobe.xmp", "icc_profile"} & set(stored.info)
    assert stored.mode == "RGBA"
    assert stored.getpixel((5, 5)) == (0, 128, 0, 100)


def test_variants_are_made_at_600_and_1200_for_wide_images(workspace):
    image = _upload_image(workspace, _image_bytes("JPEG", size=(1500, 1000)), name="wide.jpg")
    assert set(image.variants) == {"600", "1200"}
    assert _stored_image(image.variants["600"]).size == (600, 400)
    assert _stored_image(image.variants["1200"]).size == (1200, 800)
    assert _stored_image(image.variants["1200"]).format == "JPEG"
    assert image.variants["600"].endswith("/600.jpg")


def test_only_narrower_variants_are_made(workspace):
    medium = _upload_image(workspace, _image_bytes("WEBP", size=(800, 100)), name="m.webp")
    assert set(medium.variants) == {"600"}
    assert _stored_image(medium.variants["600"]).size == (600, 75)
    assert medium.content_type == "image/webp"
    small = _upload_image(workspace, _image_bytes("PNG", size=(600, 100)), name="s.png")
    assert small.variants == {}


def test_animated_gif_keeps_its_frames(workspace):
    frames = [Image.new("RGB", (700, 50), color) for color in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=120, loop=0)
    image = _upload_image(workspace, out.getvalue(), name="spinner.gif")
    for name in (image.file_name, image.variants["600"]):
        stored = _stored_image(name)
        assert stored.format == "GIF"
        assert stored.n_frames == 3
    assert image.content_type == "image/gif"
    colours = [
        frame.convert("RGB").getpixel((5, 5))
        for frame in ImageSequence.Iterator(_stored_image(image.file_name))
    ]
    assert colours[0][0] > 200
    assert colours[1][1] > 100
    assert colours[2][2] > 200


def _animation(fmt: str, count: int, size=(40, 20)) -> bytes:
    colours = ["red", "green", "blue"]
    frames = [Image.new("RGB", size, colours[index % 3]) for index in range(count)]
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=80, loop=0)
    return out.getvalue()


def test_animation_past_the_frame_limit_keeps_its_first_frame(workspace):
    source = _animation("GIF", images.MAX_ANIMATION_FRAMES + 1)
    with Image.open(io.BytesIO(source)) as original:
        assert original.n_frames == images.MAX_ANIMATION_FRAMES + 1
    stored = _stored_image(_upload_image(workspace, source, name="long.gif").file_name)
    assert stored.format == "GIF"
    assert not getattr(stored, "is_animated", False)
    assert stored.convert("RGB").getpixel((1, 1))[0] > 200


def test_animated_webp_keeps_its_first_frame(workspace):
    source = _animation("WEBP", 3)
    with Image.open(io.BytesIO(source)) as original:
        assert original.n_frames == 3
    stored = _stored_image(_upload_image(workspace, source, name="anim.webp").file_name)
    assert stored.format == "WEBP"
    assert stored.n_frames == 1
    assert stored.convert("RGB").getpixel((1, 1))[0] > 200


def test_palette_png_stays_a_palette_image(workspace):
    source = Image.new("RGB", (20, 20), (10, 200, 10)).convert("P", palette=Image.Palette.ADAPTIVE)
    out = io.BytesIO()
    source.save(out, "PNG")
    image = _upload_image(workspace, out.getvalue(), name="p.png")
    stored = _stored_image(image.file_name)
    assert stored.mode == "P"
    assert stored.convert("RGB").getpixel((3, 3)) == (10, 200, 10)


def test_delete_removes_the_row_and_its_files(
    workspace, private_storage, django_capture_on_commit_callbacks
):
    image = _upload_image(workspace, _image_bytes("PNG", size=(1300, 20)))
    image_id = image.pk
    assert len(_stored_files(private_storage)) == 3
    with django_capture_on_commit_callbacks(execute=True):
        images.image_delete(image=image, acting_user=None)
    assert not MediaImage.objects.exists()
    assert _stored_files(private_storage) == []
    assert AuditEntry.objects.filter(verb="image.deleted", target_id=str(image_id)).exists()


# Public URLs ---------------------------------------------------------------------------


def test_public_url_is_absolute_with_the_copy_name(workspace, settings):
    settings.BASE_URL = "https://esp.example.com"
    image = _upload_image(workspace, _image_bytes("JPEG", size=(1300, 100)), name="a.jpg")
    token = images.image_token_make(image=image)
    assert images.image_public_url(image=image) == f"https://esp.example.com/m/{token}/original.jpg"
    assert images.image_public_url(image=image, width=600).endswith(f"/m/{token}/600.jpg")
    assert images.image_token_read(token) == (workspace.pk, image.pk)


def test_public_url_serves_the_bytes_with_safe_headers(client, workspace, private_storage):
    image = _upload_image(workspace, _image_bytes("PNG", size=(700, 20)))
    response = client.get(images.image_public_path(image=image))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == (private_storage / image.file_name).read_bytes()
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'"
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response["Content-Disposition"].startswith("inline")
    assert "Set-Cookie" not in response.headers

    variant = client.get(images.image_public_path(image=image, width=600))
    stored = (private_storage / image.variants["600"]).read_bytes()
    assert b"".join(variant.streaming_content) == stored

    head = client.head(images.image_public_path(image=image))
    assert head.status_code == 200
    assert head["Content-Length"] == str(image.size_bytes)
    assert head.content == b""

    assert client.post(images.image_public_path(image=image)).status_code == 405


def test_public_url_refuses_names_the_image_does_not_have(client, workspace):
    image = _upload_image(workspace)  # no variants: 40 pixels wide
    token = images.image_token_make(image=image)
    for name in ("600.png", "original.jpg", "..%2Foriginal.png", "other"):
        assert client.get(f"/m/{token}/{name}").status_code == 404


def test_forged_or_tampered_token_is_404_without_touching_the_database(
    client, workspace, django_assert_num_queries
):
    image = _upload_image(workspace)
    other = _upload_image(workspace)
    token = images.image_token_make(image=image)
    value, signature = token.split(":")
    tampered = f"{workspace.pk}.{other.pk}:{signature}"
    for bad in (tampered, f"{value}:forged", "garbage", token[:-1]):
        with django_assert_num_queries(0):
            response = client.get(f"/m/{bad}/original.png")
        assert response.status_code == 404


def test_token_of_a_deleted_image_is_404(client, workspace):
    image = _upload_image(workspace)
    path = images.image_public_path(image=image)
    images.image_delete(image=image, acting_user=None)
    assert client.get(path).status_code == 404


# Pages ---------------------------------------------------------------------------------


def test_empty_library_says_so(workspace, member_client):
    response = member_client(workspace, Role.EDITOR).get(_url("image_list", workspace))
    assert response.status_code == 200
    assert b"No images yet" in response.content
    assert b'enctype="multipart/form-data"' in response.content
    assert b"csrfmiddlewaretoken" in response.content


def test_upload_through_the_page_opens_the_image(workspace, member_client):
    client = member_client(workspace, Role.EDITOR)
    data = _image_bytes("JPEG", size=(1300, 650))
    response = client.post(
        _url("image_list", workspace), {"file": _upload(data, "banner.jpg", "image/jpeg")}
    )
    image = MediaImage.objects.get(workspace=workspace)
    assert response.status_code == 302
    assert response["Location"] == _url("image_detail", workspace, image_id=image.pk)
    assert image.uploaded_by == client.user

    listing = client.get(_url("image_list", workspace)).content.decode()
    assert "banner.jpg" in listing
    assert images.image_public_path(image=image, width=600) in listing


def test_upload_page_shows_the_refusal_and_stores_nothing(
    workspace, member_client, private_storage
):
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("image_list", workspace), {"file": _upload(SVG_WITH_SCRIPT, "logo.png")}
    )
    assert response.status_code == 400
    assert b"SVG, XML and HTML files are not accepted" in response.content
    assert b"alert alert-error" in response.content or b"errorlist" in response.content
    assert not MediaImage.objects.exists()
    assert _stored_files(private_storage) == []


def test_upload_over_the_size_limit_is_refused_from_its_length(
    workspace, member_client, private_storage, settings
):
    settings.MEDIA_IMAGE_MAX_BYTES = 1000
    client = member_client(workspace, Role.EDITOR)
    big = b"\x89PNG" + b"\0" * 200_000
    response = client.post(_url("image_list", workspace), {"file": _upload(big, "big.png")})
    assert response.status_code == 413
    assert b"larger than" in response.content
    assert not MediaImage.objects.exists()
    assert _stored_files(private_storage) == []


def test_viewer_sees_the_library_but_cannot_upload_or_delete(
    workspace, member_client, private_storage
):
    image = _upload_image(workspace)
    viewer = member_client(workspace, Role.VIEWER)
    listing = viewer.get(_url("image_list", workspace))
    assert listing.status_code == 200
    assert b"photo.png" in listing.content
    assert b'enctype="multipart/form-data"' not in listing.content

    upload = viewer.post(_url("image_list", workspace), {"file": _upload(_image_bytes())})
    assert upload.status_code == 403
    assert MediaImage.objects.count() == 1

    detail = viewer.get(_url("image_detail", workspace, image_id=image.pk))
    assert detail.status_code == 200
    assert b"Delete" not in detail.content
    assert viewer.post(_url("image_delete", workspace, image_id=image.pk)).status_code == 403
    assert (
        viewer.post(
            _url("image_detail", workspace, image_id=image.pk), {"alt_text": "x"}
        ).status_code
        == 403
    )
    assert MediaImage.objects.filter(pk=image.pk).exists()


def test_detail_shows_copyable_urls_and_a_snippet(workspace, member_client, settings):
    settings.BASE_URL = "https://esp.example.com"
    image = _upload_image(workspace, _image_bytes("PNG", size=(1300, 130)), name="hero.png")
    client = member_client(workspace, Role.EDITOR)
    client.post(
        _url("image_detail", workspace, image_id=image.pk), {"alt_text": 'Our "spring" sale'}
    )
    image.refresh_from_db()
    assert image.alt_text == 'Our "spring" sale'

    page = client.get(_url("image_detail", workspace, image_id=image.pk)).content.decode()
    for width in (None, 600, 1200):
        assert images.image_public_url(image=image, width=width) in page
    assert page.count('data-copy-from="image-url-') == 3
    assert 'data-copy-from="image-snippet"' in page
    assert "js/copy.js" in page
    # Escaped twice: once in the snippet's HTML, once more to sit inside the textarea.
    url_600 = images.image_public_url(image=image, width=600)
    assert (
        f"&lt;img src=&quot;{url_600}&quot; alt=&quot;Our &amp;quot;spring&amp;quot; sale" in page
    )


def test_alt_text_too_long_is_a_form_error(workspace, member_client):
    image = _upload_image(workspace)
    client = member_client(workspace, Role.EDITOR)
    response = client.post(
        _url("image_detail", workspace, image_id=image.pk), {"alt_text": "x" * 301}
    )
    assert response.status_code == 400
    image.refresh_from_db()
    assert image.alt_text == ""


def test_delete_through_the_page(
    workspace, member_client, private_storage, django_capture_on_commit_callbacks
):
    image = _upload_image(workspace)
    client = member_client(workspace, Role.EDITOR)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url("image_delete", workspace, image_id=image.pk))
    assert response.status_code == 302
    assert response["Location"] == _url("image_list", workspace)
    assert not MediaImage.objects.exists()
    assert _stored_files(private_storage) == []
    assert client.get(_url("image_delete", workspace, image_id=image.pk)).status_code == 405


def test_image_of_another_workspace_is_404(workspace, member_client, private_storage):
    foreign = _upload_image(WorkspaceFactory())
    client = member_client(workspace, Role.OWNER)
    assert client.get(_url("image_detail", workspace, image_id=foreign.pk)).status_code == 404
    assert (
        client.post(
            _url("image_detail", workspace, image_id=foreign.pk), {"alt_text": "mine"}
        ).status_code
        == 404
    )
    assert client.post(_url("image_delete", workspace, image_id=foreign.pk)).status_code == 404
    foreign.refresh_from_db()
    assert foreign.alt_text == ""
    assert (private_storage / foreign.file_name).exists()
    listing = client.get(_url("image_list", workspace)).content
    assert b"No images yet" in listing
