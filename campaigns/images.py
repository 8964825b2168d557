"""The media library: uploads checked and re-encoded by Pillow, resized copies, public URLs.

An upload is refused unless its content decodes as JPEG, PNG, GIF or WebP within the size
and pixel limits; the file's name and the client's content type are never trusted. What is
stored is encoded again from the decoded pixels, so no EXIF, XMP, comments, colour
profiles or text chunks (nor anything hidden in them) survive. Images are public through a
signed token in their URL, because recipients' mail clients fetch them without a session.
"""

import hashlib
import io
import uuid
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import NamedTuple

from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from accounts.audit import audit_record
from accounts.downloads import workspace_file_name
from accounts.errors import ApplicationError
from accounts.models import User, Workspace
from campaigns.models import MediaImage

VARIANT_WIDTHS = (600, 1200)
JPEG_QUALITY = 85
# An animated GIF keeps its animation up to this many frames; past it, the first frame only.
MAX_ANIMATION_FRAMES = 100

_TOKEN_SALT = "campaigns.media"  # noqa: S105 (a namespace for signatures, not a secret)


@dataclass(frozen=True)
class _Format:
    content_type: str
    extension: str


# Identified by Pillow from the content; nothing else is accepted.
FORMATS = {
    "JPEG": _Format("image/jpeg", "jpg"),
    "PNG": _Format("image/png", "png"),
    "GIF": _Format("image/gif", "gif"),
    "WEBP": _Format("image/webp", "webp"),
}

_NOT_AN_IMAGE = "This file is not a JPEG, PNG, GIF or WebP image."
_MARKUP = (
    "SVG, XML and HTML files are not accepted: they can carry scripts. "
    "Upload a JPEG, PNG, GIF or WebP image."
)
_DAMAGED = "This image could not be read; the file may be damaged."


class UploadLimits(NamedTuple):
    max_bytes: int
    max_pixels: int
    max_side: int


def upload_limits() -> UploadLimits:
    return UploadLimits(
        max_bytes=settings.MEDIA_IMAGE_MAX_BYTES,
        max_pixels=settings.MEDIA_IMAGE_MAX_PIXELS,
        max_side=settings.MEDIA_IMAGE_MAX_SIDE,
    )


def too_large_message() -> str:
    limit = filesizeformat(upload_limits().max_bytes)
    return f"The file is larger than {limit}, the limit for images."


def _max_count() -> int:
    return settings.MEDIA_IMAGE_MAX_COUNT


# Reads --------------------------------------------------------------------------------


def image_list(*, workspace: Workspace) -> QuerySet[MediaImage]:
    return MediaImage.objects.for_workspace(workspace)


def image_get(*, workspace: Workspace, image_id: int) -> MediaImage:
    image = MediaImage.objects.for_workspace(workspace).filter(pk=image_id).first()
    if image is None:
        raise Http404("No such image.")
    return image


def image_file_names(*, image: MediaImage) -> dict[str, str]:
    """Public name (`original.png`, `600.png`) -> storage name, for every stored copy."""
    names = {PurePosixPath(image.file_name).name: image.file_name}
    for stored in image.variants.values():
        names[PurePosixPath(stored).name] = stored
    return names


# Public URLs ---------------------------------------------------------------------------


def image_token_make(*, image: MediaImage) -> str:
    # No expiry: the URL is pasted into campaigns that stay in inboxes for years.
    return signing.Signer(salt=_TOKEN_SALT).sign(f"{image.workspace_id}.{image.pk}")


def image_token_read(token: str) -> tuple[int, int] | None:
    """(workspace_id, image_id), or None when the token is forged or malformed."""
    try:
        value = signing.Signer(salt=_TOKEN_SALT).unsign(token)
        workspace_id, image_id = (int(part) for part in value.split("."))
    except (signing.BadSignature, ValueError):
        return None
    return workspace_id, image_id


def image_public_file(*, token: str, name: str) -> tuple[MediaImage, str]:
    """The image and the storage name a public URL points at; Http404 for anything else.

    The signature is checked before the database is touched, so forged tokens cost nothing.
    """
    ids = image_token_read(token)
    if ids is None:
        raise Http404("No such image.")
    workspace_id, image_id = ids
    image = MediaImage.objects.filter(workspace_id=workspace_id, pk=image_id).first()
    stored = image_file_names(image=image).get(name) if image is not None else None
    if image is None or stored is None:
        raise Http404("No such image.")
    return image, stored


def image_public_path(*, image: MediaImage, width: int | None = None) -> str:
    """The site-relative path of the original, or of the copy `width` pixels wide."""
    stored = image.variants.get(str(width)) if width else None
    name = PurePosixPath(stored or image.file_name).name
    return reverse(
        "campaigns_public:image_public",
        kwargs={"token": image_token_make(image=image), "name": name},
    )


def image_public_url(*, image: MediaImage, width: int | None = None) -> str:
    """The absolute URL to paste into campaigns; an unknown width gives the original."""
    return settings.BASE_URL + image_public_path(image=image, width=width)


@dataclass(frozen=True)
class PublicCopy:
    label: str
    width: int
    height: int
    url: str


def image_public_copies(*, image: MediaImage) -> list[PublicCopy]:
    """The original and each resized copy, with the absolute URL to paste."""
    copies = [PublicCopy("Original", image.width, image.height, image_public_url(image=image))]
    for width in VARIANT_WIDTHS:
        if str(width) in image.variants:
            height = max(1, round(image.height * width / image.width))
            url = image_public_url(image=image, width=width)
            copies.append(PublicCopy(f"{width} pixels wide", width, height, url))
    return copies


# Writes --------------------------------------------------------------------------------


def image_upload(*, workspace: Workspace, upload: UploadedFile, acting_user: User) -> MediaImage:
    """Check an uploaded image, store it re-encoded with its resized copies, record it."""
    max_bytes = upload_limits().max_bytes
    if image_list(workspace=workspace).count() >= _max_count():
        raise ApplicationError(
            f"The library holds {_max_count()} images, its limit. Delete some to add more."
        )
    data = _read_at_most(upload, max_bytes)
    if data is None:
        raise ApplicationError(too_large_message())
    encoded = _reencode(data)

    folder = f"images/{uuid.uuid4().hex}"
    written: list[str] = []
    try:
        original = _store(workspace, f"{folder}/original.{encoded.extension}", encoded.original)
        written.append(original)
        variants = {}
        for width, content in encoded.variants.items():
            variants[str(width)] = _store(
                workspace, f"{folder}/{width}.{encoded.extension}", content
            )
            written.append(variants[str(width)])
        with transaction.atomic():
            image = MediaImage.objects.create(
                workspace=workspace,
                name=_display_name(upload.name),
                file_name=original,
                content_type=encoded.content_type,
                width=encoded.width,
                height=encoded.height,
                size_bytes=len(encoded.original),
                sha256=hashlib.sha256(encoded.original).hexdigest(),
                variants=variants,
                uploaded_by=acting_user,
            )
            audit_record(
                workspace=workspace,
                actor=acting_user,
                verb="image.uploaded",
                target=image,
                details={
                    "content_type": image.content_type,
                    "width": image.width,
                    "height": image.height,
                    "size_bytes": image.size_bytes,
                    "sha256": image.sha256,
                },
            )
    except BaseException:
        _delete_files(written)
        raise
    return image


@transaction.atomic
def image_update_alt(*, image: MediaImage, alt_text: str, acting_user: User) -> MediaImage:
    """Set the text that mail clients show when they block images."""
    image.alt_text = alt_text.strip()
    image.save(update_fields=["alt_text"])
    return image


@transaction.atomic
def image_delete(*, image: MediaImage, acting_user: User) -> None:
    """Remove the image and its files; campaigns that pasted its URL show a broken image."""
    names = list(image_file_names(image=image).values())
    audit_record(
        workspace=image.workspace,
        actor=acting_user,
        verb="image.deleted",
        target=image,
        details={"name": image.name, "sha256": image.sha256},
    )
    image.delete()
    # The files go only once the row is gone for good.
    transaction.on_commit(lambda: _delete_files(names))


def _delete_files(names: list[str]) -> None:
    for name in names:
        default_storage.delete(name)


# Checking and encoding ----------------------------------------------------------------


@dataclass
class _Encoded:
    content_type: str
    extension: str
    width: int
    height: int
    original: bytes
    variants: dict[int, bytes]


def _read_at_most(upload: UploadedFile, limit: int) -> bytes | None:
    """The upload's bytes, or None once more than `limit` arrive (its declared size aside)."""
    if upload.size is not None and upload.size > limit:
        return None
    upload.seek(0)
    buffer = bytearray()
    for chunk in upload.chunks():
        buffer += chunk
        if len(buffer) > limit:
            return None
    return bytes(buffer)


def _display_name(name: str | None) -> str:
    return (PurePosixPath((name or "").replace("\\", "/")).name or "image")[:200]


def _store(workspace: Workspace, relative: str, content: bytes) -> str:
    return default_storage.save(
        workspace_file_name(workspace=workspace, relative=relative), ContentFile(content)
    )


def _looks_like_markup(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(b"<") or b"<svg" in head or b"<script" in head


def _reencode(data: bytes) -> _Encoded:
    _, max_pixels, max_side = upload_limits()
    with warnings.catch_warnings():
        # Pillow only warns between one and two times its own pixel limit: refuse those too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            # Lazy: this reads the header only, so the size is known before any decoding.
            source = Image.open(io.BytesIO(data), formats=list(FORMATS))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ApplicationError(_too_many_pixels(max_pixels)) from None
        except UnidentifiedImageError:
            raise ApplicationError(_MARKUP if _looks_like_markup(data) else _NOT_AN_IMAGE) from None
        except Exception:  # Pillow's plugins raise many types on malformed headers
            raise ApplicationError(_DAMAGED) from None
        with source:
            fmt = FORMATS.get(source.format or "")
            if fmt is None:
                raise ApplicationError(_NOT_AN_IMAGE)
            width, height = source.size
            if width < 1 or height < 1:
                raise ApplicationError(_DAMAGED)
            if max(width, height) > max_side:
                raise ApplicationError(
                    f"The image is {width} by {height} pixels; "
                    f"neither side may be longer than {max_side} pixels."
                )
            if width * height > max_pixels:
                raise ApplicationError(_too_many_pixels(max_pixels))
            try:
                frames, durations, loop = _decode(source, max_pixels)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise ApplicationError(_too_many_pixels(max_pixels)) from None
            except ApplicationError:
                raise
            except Exception:  # truncated or corrupt pixel data
                raise ApplicationError(_DAMAGED) from None

    width, height = frames[0].size
    variants = {}
    for target in VARIANT_WIDTHS:
        if width > target:
            size = (target, max(1, round(height * target / width)))
            resized = [
                # A palette would be resized by nearest neighbour: smooth it in RGB instead.
                (frame.convert("RGB") if frame.mode == "P" else frame).resize(
                    size, Image.Resampling.LANCZOS
                )
                for frame in frames
            ]
            variants[target] = _encode(source.format, resized, durations, loop)
    return _Encoded(
        content_type=fmt.content_type,
        extension=fmt.extension,
        width=width,
        height=height,
        original=_encode(source.format, frames, durations, loop),
        variants=variants,
    )


def _too_many_pixels(max_pixels: int) -> str:
    return (
        f"The image has too many pixels to process safely "
        f"(at most {max_pixels / 1_000_000:g} million)."
    )


def _decode(source: Image.Image, max_pixels: int) -> tuple[list[Image.Image], list[int], int]:
    """Clean frames of pixels (no metadata), their durations in ms, and the GIF loop count.

    Only GIFs stay animated (up to MAX_ANIMATION_FRAMES frames, and no more decoded pixels
    in all than the pixel limit); any other animation, or a larger one, keeps its first
    frame.
    """
    if source.format == "GIF" and getattr(source, "is_animated", False):
        frames: list[Image.Image] = []
        durations: list[int] = []
        budget = max_pixels
        for frame in ImageSequence.Iterator(source):
            budget -= frame.width * frame.height
            if len(frames) >= MAX_ANIMATION_FRAMES or budget < 0:
                break
            # Pillow gives the first frame in P mode and the later ones composited in RGB(A);
            # one mode for all keeps transparency consistent across the animation.
            frames.append(_clean(frame, "GIF", mode="RGBA"))
            durations.append(int(frame.info.get("duration") or 100))
        else:
            return frames, durations, int(source.info.get("loop", 0))
        source.seek(0)
    return [_clean(ImageOps.exif_transpose(source), source.format)], [], 0


def _clean(frame: Image.Image, image_format: str, *, mode: str | None = None) -> Image.Image:
    """A new image holding only the pixels: no EXIF, XMP, ICC profile, comment or text."""
    has_alpha = frame.mode in ("RGBA", "LA", "PA", "La", "RGBa") or ("transparency" in frame.info)
    if mode is None:
        if image_format == "JPEG" or not has_alpha:
            mode = "L" if frame.mode in ("1", "L", "I", "I;16", "F") else "RGB"
            if frame.mode == "P" and image_format != "JPEG":
                mode = "P"  # an opaque palette image stays small
        else:
            mode = "RGBA"
    if mode == "P":
        clean = Image.new("P", frame.size)
        clean.putpalette(frame.getpalette() or [])
        clean.paste(frame)
        return clean
    converted = frame.convert(mode)
    clean = Image.new(mode, converted.size)
    clean.paste(converted)
    return clean


def _encode(image_format: str, frames: list[Image.Image], durations: list[int], loop: int) -> bytes:
    out = io.BytesIO()
    first = frames[0]
    if image_format == "JPEG":
        first.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
    elif image_format == "PNG":
        first.save(out, "PNG", optimize=True)
    elif image_format == "WEBP":
        first.save(out, "WEBP", quality=JPEG_QUALITY, method=4)
    elif len(frames) > 1:
        first.save(
            out,
            "GIF",
            save_all=True,
            append_images=frames[1:],
            duration=durations,
            loop=loop,
            disposal=2,
            optimize=False,
        )
    else:
        first.save(out, "GIF")
    return out.getvalue()
