"""compile_message / render: the one renderer of preview, test send and the real send."""

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from django.conf import settings

from campaigns.rendering import (
    ContextError,
    TemplateError,
    compile_message,
)
from campaigns.rendering.engine import (
    POSTAL_ADDRESS,
    PREFERENCES_URL,
    UNSUBSCRIBE_URL,
    WEB_VERSION_URL,
)
from campaigns.rendering.inline import inline_css
from campaigns.rendering.text import html_to_text
from compliance.footer import (
    POSTAL_ADDRESS_PLACEHOLDER,
    PREFERENCES_PLACEHOLDER,
    UNSUBSCRIBE_PLACEHOLDER,
)

NEWSLETTER = """<!doctype html>
<html><head><style>
  .lead { color: #333333; font-size: 16px; }
  a.button { background: #0055ff; color: #ffffff; }
  @media (max-width: 600px) { .lead { font-size: 18px; } }
  @media (prefers-color-scheme: dark) { body { background: #111111; } }
</style></head>
<body>
<h1>Hello {{ first_name|default:"there" }}</h1>
<p class="lead">Your plan: {{ attributes.plan|default:"free"|upper }}.</p>
<table role="presentation">
  {% if attributes.vip %}<tr><td>Thanks for being VIP, {{ first_name }}!</td></tr>
  {% else %}<tr><td>Upgrade today.</td></tr>{% endif %}
</table>
<p><a class="button" href="DEAL_HREF">See the deal</a></p>
<ul><li>First</li><li>Second</li></ul>
<script>alert("x")</script>
<p><a href="{{ web_version_url }}">View in browser</a> ·
<a href="{{ unsubscribe_url }}">Unsubscribe</a> ·
<a href="{{ preferences_url }}">Preferences</a></p>
<p>{{ postal_address }}</p>
</body></html>
""".replace(
    "DEAL_HREF",
    "https://shop.example/deal?email={{ email }}&amp;plan={{ attributes.plan }}#{{ first_name }}",
)

CONTEXT = {
    "email": "ann+news@example.com",
    "first_name": "Ann",
    "last_name": "Lee",
    "postal_address": "1 Main St, Springfield",
    "unsubscribe_url": "https://esp.example/u/abc?s=1&t=2",
    "preferences_url": "https://esp.example/p/abc",
    "web_version_url": "https://esp.example/v/xyz",
    "attributes": {"plan": "pro & co", "vip": True},
}


@pytest.fixture(scope="module")
def compiled():
    return compile_message(
        subject="{{ first_name|default:'Friend' }}, your {{ attributes.plan }} news",
        preheader="Inside: deals for {{ first_name }}",
        html=NEWSLETTER,
    )


def test_names_match_the_compliance_footer_placeholders():
    assert f"{{{{ {UNSUBSCRIBE_URL} }}}}" == UNSUBSCRIBE_PLACEHOLDER
    assert f"{{{{ {PREFERENCES_URL} }}}}" == PREFERENCES_PLACEHOLDER
    assert f"{{{{ {POSTAL_ADDRESS} }}}}" == POSTAL_ADDRESS_PLACEHOLDER
    assert WEB_VERSION_URL == "web_version_url"


def test_subject_renders_with_defaults(compiled):
    assert compiled.render(CONTEXT).subject == "Ann, your pro & co news"
    assert compiled.render({}).subject == "Friend, your news"


def test_html_body_merge_tags_and_escaping(compiled):
    html = compiled.render({**CONTEXT, "first_name": "<b>Ann</b>"}).html
    assert "Hello &lt;b&gt;Ann&lt;/b&gt;" in html
    assert "Your plan: PRO &amp; CO." in html
    assert "Thanks for being VIP" in html
    assert "Upgrade today" not in html
    assert "1 Main St, Springfield" in html
    assert "<b>Ann</b>" not in html


def test_else_branch_and_defaults(compiled):
    html = compiled.render({"attributes": {}}).html
    assert "Hello there" in html
    assert "Your plan: FREE." in html
    assert "Upgrade today." in html


def test_merge_tags_in_link_urls_are_url_encoded(compiled):
    html = compiled.render(CONTEXT).html
    assert (
        'href="https://shop.example/deal?email=ann%2Bnews%40example.com'
        '&amp;plan=pro%20%26%20co#Ann"'
    ) in html


def test_platform_urls_fill_whole_hrefs(compiled):
    html = compiled.render(CONTEXT).html
    assert 'href="https://esp.example/u/abc?s=1&amp;t=2"' in html
    assert 'href="https://esp.example/p/abc"' in html
    assert 'href="https://esp.example/v/xyz"' in html


def test_a_contact_value_cannot_become_a_javascript_url():
    compiled = compile_message(
        subject="s",
        html='<a href="{{ attributes.site }}">site</a> <img src=" {{ attributes.site }}">',
    )
    rendered = compiled.render({"attributes": {"site": "javascript:alert(document.cookie)"}})
    assert "javascript" not in rendered.html
    assert "javascript" not in rendered.text
    assert 'href=""' in rendered.html
    assert compiled.render({"attributes": {"site": "https://a.example"}}).text.startswith(
        "site (https://a.example)"
    )


def test_css_is_inlined_and_media_queries_kept(compiled):
    html = compiled.render(CONTEXT).html
    assert 'class="lead" style="color: #333333;font-size: 16px;"' in html
    assert "background: #0055ff" in html
    assert "@media (max-width: 600px)" in html
    assert "@media (prefers-color-scheme: dark)" in html
    assert ".lead { color: #333333" not in html


def test_inliner_never_fetches_remote_stylesheets():
    html = '<html><head><link rel="stylesheet" href="http://127.0.0.1:9/x.css"></head><body>x</body></html>'
    assert "127.0.0.1:9" not in inline_css(html)


def test_preheader_is_a_hidden_first_element(compiled):
    html = compiled.render(CONTEXT).html
    body = html[html.index("<body") :]
    assert body.index("Inside: deals for Ann") < body.index("Hello Ann")
    assert "display:none" in body[: body.index("Inside")]


def test_text_part_is_derived_from_the_html(compiled):
    text = compiled.render(CONTEXT).text
    assert "<" not in text.replace("<b>", "")
    assert "Hello Ann\n=" in text
    assert "Your plan: PRO & CO." in text
    assert (
        "See the deal (https://shop.example/deal?email=ann%2Bnews%40example.com"
        "&plan=pro%20%26%20co#Ann)"
    ) in text
    assert "Unsubscribe (https://esp.example/u/abc?s=1&t=2)" in text
    assert "View in browser (https://esp.example/v/xyz)" in text
    assert "- First\n- Second" in text
    assert "alert" not in text
    assert "color" not in text
    assert "Inside: deals" not in text
    assert "\n\n\n" not in text


def test_explicit_text_part_is_used_as_written():
    compiled = compile_message(
        subject="s", html="<p>x</p>", text="Hi {{ first_name }} <3\n{{ unsubscribe_url }}"
    )
    assert compiled.render(CONTEXT).text == "Hi Ann <3\nhttps://esp.example/u/abc?s=1&t=2"


def test_html_to_text_structure():
    text = html_to_text(
        "<h2>Title</h2><p>One   two\nthree</p><ol><li>a</li><li>b</li></ol>"
        '<p><a href="https://x.example">https://x.example</a><br>next<img alt="logo"></p>'
    )
    assert text == "Title\n-----\n\nOne two three\n\n1. a\n2. b\n\nhttps://x.example\nnextlogo\n"


@pytest.mark.parametrize(
    "payload",
    [
        "{{ settings.SECRET_KEY }}",
        "{{ config }}",
        "{{ request.META }}",
    ],
)
def test_unknown_names_are_inert_at_render(payload):
    compiled = compile_message(subject=payload, preheader=payload, html=f"<p>{payload}</p>")
    rendered = compiled.render(CONTEXT)
    for part in (rendered.subject, rendered.html, rendered.text):
        assert settings.SECRET_KEY not in part
        assert "SECRET" not in part


@pytest.mark.parametrize(
    "payload",
    [
        "{% load static %}",
        '{% include "/etc/passwd" %}',
        "{{ contact.__class__ }}",
        "{{ ''.__class__.__mro__ }}",
        "{% for c in contacts %}{{ c }}{% endfor %}",
        "{{ 7*7 }}",
        "{{ first_name|unknownfilter }}",
        "<p>{{ first_name </p>",
        "<p>{% if first_name %}</p>",
    ],
)
@pytest.mark.parametrize("part", ["subject", "preheader", "html", "text"])
def test_ssti_payloads_are_refused_in_every_part(payload, part):
    parts = {"subject": "s", "preheader": "", "html": "<p>x</p>", "text": None}
    parts[part] = payload
    with pytest.raises(TemplateError):
        compile_message(**parts)


def test_html_template_errors_give_line_and_column():
    with pytest.raises(TemplateError) as caught:
        compile_message(subject="s", html="<p>\n<b>{{ first_name|nope }}</b>")
    assert (caught.value.line, caught.value.column) == (2, 4)


def test_context_is_validated():
    compiled = compile_message(subject="s", html="<p>{{ x }}</p>")
    with pytest.raises(ContextError):
        compiled.render({"x": object()})
    with pytest.raises(ContextError):
        compiled.render({"x": lambda: "called"})


@pytest.mark.parametrize("subject", ["Hello\r\nBcc: x@example.com", "Hi\nthere", "a\rb", "a\x00b"])
def test_subject_with_line_breaks_is_refused(subject):
    with pytest.raises(TemplateError, match="one line"):
        compile_message(subject=subject, html="<p>x</p>")


def test_merge_value_with_line_break_cannot_inject_a_header():
    compiled = compile_message(subject="Hi {{ first_name }}", html="<p>x</p>")
    value = "Ann\r\nBcc: victim@example.com\nX-Evil: 1\u2028y"
    rendered = compiled.render({"first_name": value})
    assert rendered.subject == "Hi Ann Bcc: victim@example.com X-Evil: 1 y"
    message = EmailMessage(policy=policy.SMTP)
    message["Subject"] = rendered.subject
    message["To"] = "a@example.com"
    message.set_content(rendered.text)
    parsed = BytesParser(policy=policy.default).parsebytes(message.as_bytes())
    assert parsed["Bcc"] is None
    assert parsed["X-Evil"] is None


def test_emoji_and_rtl_subjects_survive_encoding():
    subject = "🎉 {{ first_name }} — مرحبا بك ‏שלום"
    rendered = compile_message(subject=subject, html="<p>x</p>").render({"first_name": "Zoë 👋"})
    assert rendered.subject == "🎉 Zoë 👋 — مرحبا بك ‏שלום"
    message = EmailMessage(policy=policy.SMTP)
    message["Subject"] = rendered.subject
    message.set_content(rendered.text)
    raw = message.as_bytes()
    assert raw.isascii()
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert parsed["Subject"] == rendered.subject


def test_huge_body_is_refused_and_a_large_one_renders(settings):
    settings.CAMPAIGN_RENDER_MAX_BYTES = 200_000
    with pytest.raises(TemplateError, match="larger than"):
        compile_message(subject="s", html="<p>" + "x" * 200_001 + "</p>")
    compiled = compile_message(subject="s", html="<p>{{ first_name }}</p>" * 5_000)
    assert compiled.render(CONTEXT).html.count("Ann") == 5_000


def test_private_use_marker_characters_in_content_cannot_forge_tags():
    compiled = compile_message(subject="s", html="<p>\ue0000\ue001 {{ first_name }}</p>")
    html = compiled.render(CONTEXT).html
    assert "\ue000" not in html
    assert html.count("Ann") == 1


def test_conditions_inside_tables_keep_their_place():
    html = (
        "<table>{% if attributes.vip %}<tr><td>VIP</td></tr>{% else %}"
        "<tr><td>Basic</td></tr>{% endif %}</table>"
    )
    compiled = compile_message(subject="s", html=html)
    assert "VIP" in compiled.render(CONTEXT).html
    assert "Basic" not in compiled.render(CONTEXT).html
    assert "Basic" in compiled.render({}).html


def test_conditions_inside_attributes_and_urls():
    html = (
        '<p class="{% if attributes.vip %}gold{% else %}plain{% endif %}">x</p>'
        '<a href="{% if attributes.vip %}{{ web_version_url }}{% else %}'
        'https://a.example/?n={{ first_name }}{% endif %}">link</a>'
    )
    compiled = compile_message(subject="s", html=html)
    vip = compiled.render(CONTEXT)
    assert 'class="gold"' in vip.html
    assert 'href="https://esp.example/v/xyz"' in vip.html
    assert "link (https://esp.example/v/xyz)" in vip.text
    other = compiled.render({"first_name": "A B"})
    assert 'class="plain"' in other.html
    assert 'href="https://a.example/?n=A%20B"' in other.html
    assert "link (https://a.example/?n=A%20B)" in other.text


def test_merge_tags_in_image_alt_and_title():
    html = (
        '<img src="https://cdn.example/a.png" alt="For {{ first_name }}">'
        '<p title="{{ first_name }}">t</p>'
    )
    rendered = compile_message(subject="s", html=html).render({"first_name": '"><script>'})
    assert 'alt="For &quot;&gt;&lt;script&gt;"' in rendered.html
    assert 'title="&quot;&gt;&lt;script&gt;"' in rendered.html
    assert "<script>" not in rendered.html
