"""TOTP two-factor sign-in on django-otp: enrolment, verification, removal."""

import base64
from io import BytesIO

import qrcode
import qrcode.image.svg
from django.db import transaction
from django_otp import devices_for_user, user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.audit import audit_record
from accounts.errors import ApplicationError
from accounts.models import User


def totp_has_device(*, user: User) -> bool:
    return user_has_device(user, confirmed=True)


def totp_device_pending(*, user: User) -> TOTPDevice:
    """The unconfirmed device being enrolled, created on first use."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return device


def totp_secret_base32(device: TOTPDevice) -> str:
    return base64.b32encode(device.bin_key).decode().rstrip("=")


def totp_qr_data_uri(device: TOTPDevice) -> str:
    """The otpauth:// URL as an SVG image in a data: URI (no script, allowed by the CSP)."""
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


@transaction.atomic
def totp_confirm(*, user: User, token: str) -> TOTPDevice:
    device = totp_device_pending(user=user)
    if not device.verify_token(token.strip()):
        raise ApplicationError(
            "That code did not match. Check the time on your phone and try again."
        )
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    audit_record(workspace=None, actor=user, verb="user.two_factor_enabled", target=user)
    return device


def totp_match(*, user: User, token: str) -> TOTPDevice | None:
    """The confirmed device that accepts this code, if any (each code works once).

    django-otp makes a device wait longer after each wrong code; while it waits, every
    code is refused, so the caller is told to wait rather than that the code is wrong.
    """
    token = token.strip().replace(" ", "")
    devices = list(devices_for_user(user, confirmed=True))
    waiting = [device for device in devices if not device.verify_is_allowed()[0]]
    if devices and len(waiting) == len(devices):
        raise ApplicationError("Too many wrong codes in a row. Wait a few seconds, then try again.")
    if not token.isdigit():
        for device in devices:
            device.throttle_increment()
        return None
    for device in devices:
        if device.verify_token(token):
            return device
    return None


@transaction.atomic
def totp_disable(*, user: User) -> None:
    if user.is_staff:
        raise ApplicationError("Staff accounts must keep two-factor sign-in.")
    TOTPDevice.objects.filter(user=user).delete()
    audit_record(workspace=None, actor=user, verb="user.two_factor_disabled", target=user)
