"""The pre-send checklist: each check blocks (and passes once fixed) or warns."""

import pytest

from accounts.models import Workspace
from campaigns import services
from campaigns.checks import FAIL, PASS, WARN, Checklist, link_problem, presend_checks
from campaigns.models import Campaign, Variant
from campaigns.senders import sender_domain_for
from campaigns.starters import starter_get
from contacts.models import Contact
from contacts.services.suppressions import suppression_add
from sending.models import SendingDomain
from tests.factories import ContactFactory, ContactListFactory, FieldFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db

READY = {
    "subject": "Hello {{ first_name }}",
    "preheader": "What is new this month",
    "from_name": "Shop",
    "from_email": "news@shop.example",
}


def verified_domain(workspace, domain: str = "shop.example") -> SendingDomain:
    """A domain whose DNS checks passed (the sending tests reach this state through DNS)."""
    return SendingDomain.objects.create(
        workspace=workspace, domain=domain, status=SendingDomain.Status.VERIFIED
    )


def ready_campaign(workspace, *, recipients: int = 1, **fields) -> Campaign:
    """A draft that passes every check: verified From domain, footer, audience, preheader."""
    if not SendingDomain.objects.filter(workspace=workspace, domain="shop.example").exists():
        verified_domain(workspace)
    campaign = services.campaign_create(
        workspace=workspace, name="Spring sale", starter=starter_get("newsletter"), acting_user=None
    )
    services.campaign_update(campaign=campaign, acting_user=None, **{**READY, **fields})
    contact_list = ContactListFactory(workspace=workspace)
    for _ in range(recipients):
        SubscriptionFactory(
            contact=ContactFactory(workspace=workspace, first_name="Ada"),
            contact_list=contact_list,
        )
    campaign.include_lists.add(contact_list)
    return campaign


def _check(campaign: Campaign, key: str):
    campaign = Campaign.objects.select_related("workspace", "template").get(pk=campaign.pk)
    checklist = presend_checks(campaign=campaign)
    check = checklist.get(key)
    assert check is not None, f"no {key} check in {[c.key for c in checklist.checks]}"
    return check, checklist


def _force(campaign: Campaign, **fields) -> None:
    """Store values the editor's form would refuse, as an import or an old row might hold."""
    Campaign.objects.filter(pk=campaign.pk).update(**fields)


def test_ready_campaign_passes_every_check_without_warnings(workspace):
    checklist = presend_checks(campaign=ready_campaign(workspace))
    assert isinstance(checklist, Checklist)
    assert [c for c in checklist.checks if c.level != PASS] == []
    assert checklist.may_send
    assert {c.key for c in checklist.checks} >= {
        "from_domain",
        "subject",
        "footer",
        "template",
        "merge_tags",
        "links",
        "text_part",
        "audience",
        "workspace_active",
        "html_size",
        "image_alt",
        "preheader",
    }


# ---------------------------------------------------------------- From domain


def test_sending_registers_its_domain_lookup_into_campaigns(workspace):
    domain = verified_domain(workspace)
    assert sender_domain_for(workspace=workspace, address="news@shop.example") == domain
    assert sender_domain_for(workspace=workspace, address="news@elsewhere.example") is None


def test_missing_from_address_blocks(workspace):
    campaign = ready_campaign(workspace, from_email="")
    check, checklist = _check(campaign, "from_domain")
    assert check.level == FAIL
    assert "Add a From address" in check.message
    assert not checklist.may_send


def test_invalid_from_address_blocks(workspace):
    campaign = ready_campaign(workspace, from_email="news at shop")
    check, _ = _check(campaign, "from_domain")
    assert check.level == FAIL
    assert "not a valid email address" in check.message


def test_from_address_on_another_domain_than_the_verified_one_blocks(workspace):
    campaign = ready_campaign(workspace, from_email="news@other-shop.example")
    check, checklist = _check(campaign, "from_domain")
    assert check.level == FAIL
    assert "news@other-shop.example is not on a verified sending domain" in check.message
    assert check.fix == "sending"
    assert check in checklist.blocking

    services.campaign_update(campaign=campaign, acting_user=None, from_email="news@shop.example")
    check, _ = _check(campaign, "from_domain")
    assert check.level == PASS
    assert "shop.example" in check.message


def test_from_domain_that_is_only_pending_blocks(workspace):
    campaign = ready_campaign(workspace)
    SendingDomain.objects.filter(workspace=workspace).update(status=SendingDomain.Status.PENDING)
    check, _ = _check(campaign, "from_domain")
    assert check.level == FAIL


def test_from_domain_verified_by_another_workspace_blocks(workspace):
    campaign = ready_campaign(workspace)
    SendingDomain.objects.filter(workspace=workspace).update(
        workspace=Workspace.objects.create(name="Other", slug="other-ws")
    )
    check, _ = _check(campaign, "from_domain")
    assert check.level == FAIL


# ---------------------------------------------------------------- footer and subject


def test_body_without_unsubscribe_link_blocks(workspace):
    campaign = ready_campaign(workspace)
    _force(campaign, template=None, html="<p>No footer here</p>")
    check, _ = _check(campaign, "footer")
    assert check.level == FAIL
    assert "unsubscribe link" in check.message
    assert check.fix == "content"

    _force(
        campaign, html='<p>Hi</p><p>{{ postal_address }} <a href="{{ unsubscribe_url }}">Out</a>'
    )
    assert _check(campaign, "footer")[0].level == PASS


def test_workspace_without_postal_address_blocks_and_points_at_settings(workspace):
    campaign = ready_campaign(workspace)
    Workspace.objects.filter(pk=workspace.pk).update(postal_address="  ")
    check, _ = _check(campaign, "footer")
    assert check.level == FAIL
    assert "postal address" in check.message
    assert check.fix == "settings"


def test_missing_subject_blocks(workspace):
    campaign = ready_campaign(workspace, subject="  ")
    check, _ = _check(campaign, "subject")
    assert check.level == FAIL
    assert check.message == "Add a subject."

    services.campaign_update(campaign=campaign, acting_user=None, subject="Spring")
    assert _check(campaign, "subject")[0].level == PASS


# ---------------------------------------------------------------- template and merge tags


def test_template_that_does_not_compile_blocks_with_the_error(workspace):
    campaign = ready_campaign(workspace)
    _force(campaign, html="<p>ok</p>\n<p>{% for x in y %}</p>")
    check, checklist = _check(campaign, "template")
    assert check.level == FAIL
    assert "HTML body: Unknown tag" in check.message
    assert "(line 2, column 4)" in check.message
    assert not checklist.may_send


def test_subject_with_a_line_break_blocks_instead_of_breaking_the_header(workspace):
    campaign = ready_campaign(workspace)
    _force(campaign, subject="Hello\r\nBcc: victim@example.com")
    check, _ = _check(campaign, "template")
    assert check.level == FAIL
    assert "one line" in check.message


def test_merge_tag_without_a_field_blocks_until_the_field_exists(workspace):
    campaign = ready_campaign(
        workspace,
        subject="Your {{ attributes.plan }} plan",
        html="<p>{{ attributes.city }} and {{ nickname }}</p>",
    )
    check, _ = _check(campaign, "merge_tags")
    assert check.level == FAIL
    for name in ("attributes.plan", "attributes.city", "nickname"):
        assert "{{ " + name + " }}" in check.message

    FieldFactory(workspace=workspace, key="plan")
    FieldFactory(workspace=workspace, key="city")
    services.campaign_update(
        campaign=campaign, acting_user=None, html="<p>{{ attributes.city }}</p>"
    )
    assert _check(campaign, "merge_tags")[0].level == PASS


def test_merge_tag_with_a_default_is_resolved(workspace):
    campaign = ready_campaign(workspace, html='<p>{{ attributes.plan|default:"free" }}</p>')
    assert _check(campaign, "merge_tags")[0].level == PASS


def test_field_of_another_workspace_does_not_resolve_a_tag(workspace):
    FieldFactory(key="plan")  # in a workspace of its own
    campaign = ready_campaign(workspace, html="<p>{{ attributes.plan }}</p>")
    assert _check(campaign, "merge_tags")[0].level == FAIL


# ---------------------------------------------------------------- links


def test_malformed_links_block_and_are_named(workspace):
    campaign = ready_campaign(
        workspace,
        html=(
            '<a href="www.shop.example">no scheme</a>'
            '<a href="javascript:alert(1)">script</a>'
            '<a href="https:///sale">no host</a>'
            '<a href="https://shop.example/spring sale">space</a>'
            '<img src="ftp://shop.example/a.png" alt="A">'
        ),
    )
    check, _ = _check(campaign, "links")
    assert check.level == FAIL
    assert "“www.shop.example” is not a full address" in check.message
    assert "“javascript:alert(1)” uses “javascript:”" in check.message
    assert "“https:///sale” has no host name" in check.message
    assert "spring sale” contains a space" in check.message
    assert "“ftp://shop.example/a.png” uses “ftp:”" in check.message

    services.campaign_update(
        campaign=campaign,
        acting_user=None,
        html=(
            '<a href="https://shop.example/spring%20sale">ok</a>'
            '<a href="mailto:help@shop.example">mail</a><a href="tel:+4930123456">call</a>'
            '<img src="https://shop.example/a.png" alt="A">'
        ),
    )
    assert _check(campaign, "links")[0].level == PASS


def test_links_are_checked_as_rendered_for_an_audience_contact(workspace):
    FieldFactory(workspace=workspace, key="shop")
    campaign = ready_campaign(workspace, html='<a href="https://{{ attributes.shop }}/x">Shop</a>')
    # The only recipient has no value: the link would reach them without a host.
    check, _ = _check(campaign, "links")
    assert check.level == FAIL
    assert "has no host name" in check.message


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://shop.example/a?b=c#d", None),
        ("http://shop.example:8080/", None),
        ("mailto:help@shop.example?subject=Hi", None),
        ("tel:+49-30-123456", None),
        ("https://bücher.example/", None),
        ("", "is empty"),
        ("#top", "is not a full address (start it with https://)"),
        ("/relative/path", "is not a full address (start it with https://)"),
        ("https://shop.example/\u2028x", "contains a space or a control character"),
        ("https://shop..example/", "has an invalid host name"),
        ("https://shop.example:99999/", "is not a valid address"),
        ("mailto:", "has nothing after “mailto:”"),
        (
            "data:image/png;base64,AAAA",
            "uses “data:”; only http, https, mailto and tel links work in email",
        ),
    ],
)
def test_link_problem(url, problem):
    assert link_problem(url) == problem


# ---------------------------------------------------------------- audience, workspace, text


def test_audience_without_lists_blocks_and_points_at_the_audience_tab(workspace):
    campaign = ready_campaign(workspace)
    campaign.include_lists.clear()
    check, checklist = _check(campaign, "audience")
    assert check.level == FAIL
    assert check.fix == "audience"
    assert checklist.audience.sendable == 0


def test_audience_that_is_entirely_suppressed_blocks(workspace):
    campaign = ready_campaign(workspace, recipients=2)
    emails = list(Contact.objects.filter(workspace=workspace).values_list("email", flat=True))
    for email in emails:
        suppression_add(workspace=workspace, email=email, reason="manual", acting_user=None)
    check, checklist = _check(campaign, "audience")
    assert check.level == FAIL
    assert "all 2 matching contacts are suppressed" in check.message
    assert (checklist.audience.matching, checklist.audience.suppressed) == (2, 2)

    SubscriptionFactory(
        contact=ContactFactory(workspace=workspace),
        contact_list=campaign.include_lists.get(),
    )
    check, checklist = _check(campaign, "audience")
    assert check.level == PASS
    assert "2 of 3 are suppressed" in check.message
    assert checklist.audience.sendable == 1


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (Workspace.Status.PENDING_REVIEW, "", "waiting for review"),
        (Workspace.Status.SUSPENDED, "Complaint rate too high", "Complaint rate too high"),
    ],
)
def test_inactive_workspace_blocks(workspace, status, reason, expected):
    campaign = ready_campaign(workspace)
    Workspace.objects.filter(pk=workspace.pk).update(status=status, status_reason=reason)
    check, _ = _check(campaign, "workspace_active")
    assert check.level == FAIL
    assert expected in check.message

    Workspace.objects.filter(pk=workspace.pk).update(status=Workspace.Status.ACTIVE)
    assert _check(campaign, "workspace_active")[0].level == PASS


def test_empty_text_part_blocks(workspace):
    campaign = ready_campaign(workspace, text="{% if attributes.never %}Only some{% endif %}   ")
    check, _ = _check(campaign, "text_part")
    assert check.level == FAIL
    assert "plain-text part is empty" in check.message

    services.campaign_update(campaign=campaign, acting_user=None, text="Hello {{ first_name }}")
    assert _check(campaign, "text_part")[0].level == PASS


# ---------------------------------------------------------------- warnings


def test_html_over_gmails_clipping_size_warns_but_does_not_block(workspace):
    campaign = ready_campaign(workspace, html="<p>" + "x" * (103 * 1024) + "</p>")
    check, checklist = _check(campaign, "html_size")
    assert check.level == WARN
    assert "Gmail clips" in check.message
    assert check in checklist.warnings
    assert checklist.may_send

    services.campaign_update(campaign=campaign, acting_user=None, html="<p>short</p>")
    assert _check(campaign, "html_size")[0].level == PASS


def test_images_without_alt_text_warn_with_their_number(workspace):
    campaign = ready_campaign(
        workspace,
        html=(
            '<img src="https://shop.example/a.png">'
            '<img src="https://shop.example/b.png" alt="  ">'
            '<img src="https://shop.example/c.png" alt="A chair">'
        ),
    )
    check, checklist = _check(campaign, "image_alt")
    assert check.level == WARN
    assert "2 images have no alt text" in check.message
    assert checklist.may_send

    services.campaign_update(
        campaign=campaign,
        acting_user=None,
        html='<img src="https://shop.example/c.png" alt="A chair">',
    )
    assert _check(campaign, "image_alt")[0].level == PASS


def test_missing_preheader_warns(workspace):
    campaign = ready_campaign(workspace, preheader="")
    check, checklist = _check(campaign, "preheader")
    assert check.level == WARN
    assert checklist.may_send
    assert checklist.warnings == [check]


def test_ab_variant_that_does_not_compile_blocks_and_is_named(workspace):
    campaign = ready_campaign(workspace)
    Variant.objects.create(
        workspace=workspace, campaign=campaign, label="B", subject="Hi {% for x %}"
    )
    check, _ = _check(campaign, "template")
    assert check.level == FAIL
    assert check.message.startswith("The message does not compile: Variant B, Subject: Unknown tag")


def test_reply_to_with_a_line_break_blocks(workspace):
    campaign = ready_campaign(workspace)
    _force(campaign, reply_to="help@shop.example\r\nBcc: x@y.example")
    check, _ = _check(campaign, "reply_to")
    assert check.level == FAIL
    assert "is not a valid email address" in check.message

    services.campaign_update(campaign=campaign, acting_user=None, reply_to="help@shop.example")
    assert _check(campaign, "reply_to")[0].level == PASS
