"""Campaign demo data for `manage.py seed_demo`: a draft ready for the pre-send checklist
(send a test to the local sink, schedule it), an A/B test design, a brand layout with a
version history and an image in the media library."""

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, ImageDraw

from accounts.models import User, Workspace
from campaigns.ab import ab_test_save
from campaigns.images import image_public_url, image_upload
from campaigns.library import template_duplicate, template_update
from campaigns.models import Campaign, MediaImage, Template
from campaigns.services import (
    campaign_audience_update,
    campaign_create,
    campaign_update,
    template_from_starter,
)
from campaigns.starters import starter_get
from contacts.models import ContactList

DEMO_CAMPAIGN_NAME = "Spring trail report"
DEMO_AB_CAMPAIGN_NAME = "Rain shell sale (A/B subjects)"
DEMO_LAYOUT_NAME = "Demo Outdoor brand"
DEMO_IMAGE_NAME = "trail-banner.png"


def _banner_png() -> bytes:
    """A 1200x400 banner drawn here, so that the demo needs no file of its own."""
    image = Image.new("RGB", (1200, 400), (34, 87, 64))
    draw = ImageDraw.Draw(image)
    for step in range(0, 400, 8):
        shade = 64 + step // 4
        draw.rectangle([0, step, 1200, step + 8], fill=(34, 87 + step // 10, shade))
    draw.polygon([(0, 400), (380, 150), (640, 330), (900, 120), (1200, 400)], fill=(20, 50, 38))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _demo_image(workspace: Workspace, user: User) -> MediaImage:
    existing = MediaImage.objects.for_workspace(workspace).filter(name=DEMO_IMAGE_NAME).first()
    if existing is not None:
        return existing
    upload = SimpleUploadedFile(DEMO_IMAGE_NAME, _banner_png(), content_type="image/png")
    image = image_upload(workspace=workspace, upload=upload, acting_user=user)
    image.alt_text = "Mountain trail at dawn"
    image.save(update_fields=["alt_text"])
    return image


def _brand_layout(workspace: Workspace, user: User) -> Template:
    """A copy of the newsletter starter with a second version, to show the history."""
    existing = Template.objects.for_workspace(workspace).filter(name=DEMO_LAYOUT_NAME).first()
    if existing is not None:
        return existing
    starter = template_from_starter(
        workspace=workspace, starter=starter_get("newsletter"), acting_user=user
    )
    layout = template_duplicate(template=starter, acting_user=user)
    return template_update(
        template=layout,
        name=DEMO_LAYOUT_NAME,
        html=layout.html.replace("#2563eb", "#22573f"),
        acting_user=user,
    )


def _body(image: MediaImage) -> str:
    banner = image_public_url(image=image, width=600)
    return (
        f'<p><img src="{banner}" alt="{image.alt_text}" width="600"></p>\n'
        '<h1>Hi {{ first_name|default:"there" }}, the trails are open again</h1>\n'
        "<p>Three new routes opened this week, and our rain shells are 15% off until "
        "Sunday.</p>\n"
        '<p><a href="https://demo-outdoor.example/routes?utm_source=newsletter">'
        "See the new routes</a></p>\n"
        '<p>Your plan: {{ attributes.plan|default:"free" }}.</p>\n'
    )


def campaigns_demo_seed(*, workspace: Workspace, user: User, from_email: str) -> Campaign:
    """Idempotent: the demo campaigns, their layout, image and audience."""
    existing = Campaign.objects.for_workspace(workspace).filter(name=DEMO_CAMPAIGN_NAME).first()
    if existing is not None:
        return existing
    image = _demo_image(workspace, user)
    layout = _brand_layout(workspace, user)
    newsletter = ContactList.objects.for_workspace(workspace).filter(name="Newsletter").first()
    campaign = campaign_create(
        workspace=workspace,
        name=DEMO_CAMPAIGN_NAME,
        starter=starter_get("newsletter"),
        acting_user=user,
    )
    campaign = campaign_update(
        campaign=campaign,
        acting_user=user,
        subject='{{ first_name|default:"Hello" }}, the trails are open again',
        preheader="New routes, a gear test and 15% off rain shells this week.",
        from_name="Demo Outdoor Co.",
        from_email=from_email,
        reply_to="",
        html=_body(image),
        text="",
        template=layout,
    )
    if newsletter is not None:
        campaign_audience_update(
            campaign=campaign,
            include_lists=[newsletter],
            include_segments=[],
            exclude_lists=[],
            exclude_segments=[],
            tags=["Newsletter", "Spring"],
            acting_user=user,
        )
    _ab_campaign(workspace, user, from_email, newsletter, layout)
    return campaign


def _ab_campaign(workspace, user, from_email, newsletter, layout) -> None:
    campaign = campaign_create(
        workspace=workspace,
        name=DEMO_AB_CAMPAIGN_NAME,
        starter=starter_get("announcement"),
        acting_user=user,
    )
    campaign = campaign_update(
        campaign=campaign,
        acting_user=user,
        subject="Rain shells: 15% off this week",
        from_name="Demo Outdoor Co.",
        from_email=from_email,
        template=layout,
    )
    if newsletter is not None:
        campaign_audience_update(
            campaign=campaign,
            include_lists=[newsletter],
            include_segments=[],
            exclude_lists=[],
            exclude_segments=[],
            tags=["Sale"],
            acting_user=user,
        )
    ab_test_save(
        campaign=campaign,
        enabled=True,
        test_share_percent=20,
        metric="opens",
        wait_minutes=240,
        variants=[
            {"subject": "Rain shells: 15% off this week"},
            {"subject": '{{ first_name|default:"Friend" }}, stay dry for less'},
        ],
        acting_user=user,
    )
