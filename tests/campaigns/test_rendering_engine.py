"""The merge-tag engine: tags, filters, escaping modes, sandboxing and bounds."""

import datetime as dt
import time

import pytest
from django.conf import settings

from campaigns.rendering.engine import (
    ContextError,
    Mode,
    RenderLimitError,
    TemplateError,
    compile_template,
    unresolved_tags,
    validate_context,
)

CONTEXT = {
    "email": "ann@example.com",
    "first_name": "Ann",
    "last_name": "Lee",
    "postal_address": "1 Main St, Springfield",
    "unsubscribe_url": "https://esp.example/u/tok?x=1&y=2",
    "preferences_url": "https://esp.example/p/tok",
    "web_version_url": "https://esp.example/v/tok",
    "attributes": {"plan": "gold", "signup": "2024-03-05", "vip": True, "empty": ""},
}


def render(source, context=CONTEXT, mode=Mode.TEXT):
    return compile_template(source, mode=mode).render(context)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("email", "ann@example.com"),
        ("first_name", "Ann"),
        ("last_name", "Lee"),
        ("postal_address", "1 Main St, Springfield"),
        ("unsubscribe_url", "https://esp.example/u/tok?x=1&y=2"),
        ("preferences_url", "https://esp.example/p/tok"),
        ("web_version_url", "https://esp.example/v/tok"),
        ("attributes.plan", "gold"),
    ],
)
def test_each_merge_tag_renders(name, expected):
    assert render(f"<{{{{ {name} }}}}>") == f"<{expected}>"
    assert render(f"{{{{{name}}}}}") == expected


def test_default_applies_to_missing_and_empty_values():
    assert render('Hi {{ first_name|default:"there" }}', {}) == "Hi there"
    assert render("Hi {{ first_name|default:'there' }}", {"first_name": ""}) == "Hi there"
    assert render('Hi {{ first_name|default:"there" }}') == "Hi Ann"
    assert render('{{ attributes.empty|default:"none" }}') == "none"
    assert render('{{ attributes.missing|default:"basic" }}') == "basic"


def test_unknown_names_render_empty():
    assert render("[{{ nickname }}][{{ attributes.nope }}][{{ first_name.x }}]") == "[][][]"


def test_filters():
    assert render("{{ first_name|upper }} {{ first_name|lower }}") == "ANN ann"
    assert render("{{ name|title }}", {"name": "ann lee"}) == "Ann Lee"
    assert render("{{ name|capfirst }}", {"name": "ann lee"}) == "Ann lee"
    assert render('{{ attributes.signup|date:"j M Y" }}') == "5 Mar 2024"
    assert render('{{ d|date:"Y-m-d" }}', {"d": dt.date(2025, 1, 2)}) == "2025-01-02"
    assert render("{{ s|truncatechars:5 }}", {"s": "abcdefgh"}) == "abcd…"
    assert render("{{ s|escape }}", {"s": "<b>"}) == "&lt;b&gt;"
    assert render('{{ x|default:"a b"|upper }}', {}) == "A B"


def test_html_mode_escapes_values_and_text_mode_does_not():
    context = {"first_name": "<script>alert(1)</script>&"}
    assert render("{{ first_name }}", context, Mode.HTML) == (
        "&lt;script&gt;alert(1)&lt;/script&gt;&amp;"
    )
    assert render("{{ first_name|escape }}", context, Mode.HTML).count("&amp;") == 1
    assert render("{{ first_name }}", context, Mode.TEXT) == "<script>alert(1)</script>&"


def test_safe_filter_is_refused():
    with pytest.raises(TemplateError, match="safe"):
        compile_template("{{ first_name|safe }}")


def test_url_modes():
    context = {"q": "a b&c=d", "site": "javascript:alert(1)", "ok": "https://a.example/?a=1&b"}
    assert render("{{ q }}", context, Mode.URL_PART) == "a%20b%26c%3Dd"
    assert render("{{ site }}", context, Mode.URL_START) == ""
    assert render("{{ ok }}", context, Mode.URL_START) == "https://a.example/?a=1&amp;b"
    assert render("{{ ok }}", context, Mode.TEXT_URL_START) == "https://a.example/?a=1&b"


def test_if_else():
    source = "{% if attributes.vip %}VIP{% else %}regular{% endif %}"
    assert render(source) == "VIP"
    assert render(source, {"attributes": {"vip": False}}) == "regular"
    assert render("{% if not first_name %}anon{% endif %}", {}) == "anon"
    assert render("{% if first_name %}{% if last_name %}{{ last_name }}{% endif %}{% endif %}") == (
        "Lee"
    )


@pytest.mark.parametrize(
    "source",
    [
        "{{ settings.SECRET_KEY }}",
        "{{ config }}",
        "{{ request }}",
        "{{ attributes }}",
    ],
)
def test_unknown_or_whole_dict_names_are_inert(source):
    result = render(source, {**CONTEXT, "attributes": {"plan": "gold"}})
    assert result == ""
    assert settings.SECRET_KEY not in result


@pytest.mark.parametrize(
    "source",
    [
        "{% load static %}",
        '{% include "/etc/passwd" %}',
        '{% extends "base.html" %}',
        "{% for x in attributes %}{{ x }}{% endfor %}",
        "{% debug %}",
        "{% set x = 1 %}",
        "{{ contact.__class__ }}",
        "{{ _private }}",
        "{{ attributes._x }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ config.items() }}",
        "{{ 7*7 }}",
        "{{ first_name.upper() }}",
        "{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ first_name|attr:'__class__' }}",
        "{{ first_name|safe }}",
        "{{ first_name|default }}",
        "{{ first_name|upper:'x' }}",
        "{{ }}",
        "{% %}",
        "{{ first_name",
        "Hi {% if first_name %}x",
        "{% endif %}",
        "{% else %}",
        "{% if a %}{% else %}{% else %}{% endif %}",
        "{% if 7*7 %}{% endif %}",
        "{{ a }} {{ b {{ c }}",
        "${7*7} {{ 7*'7' }}",
        "#{7*7} <%= 7*7 %> {{= 7*7 }}",
    ],
)
def test_ssti_payloads_are_refused_with_a_template_error(source):
    with pytest.raises(TemplateError) as caught:
        compile_template(source, mode=Mode.HTML)
    assert caught.value.line >= 1
    assert caught.value.column >= 1


def test_template_error_points_at_line_and_column():
    with pytest.raises(TemplateError) as caught:
        compile_template("Hello\n  there {{ first_name|shout }}")
    assert (caught.value.line, caught.value.column) == (2, 9)
    assert "Unknown filter “shout”" in str(caught.value)
    assert "line 2, column 9" in str(caught.value)


def test_stray_closing_braces_are_plain_text():
    # CSS is full of `}}` and `%}`.
    assert render("@media(x){p{width:100%}}") == "@media(x){p{width:100%}}"


@pytest.mark.parametrize(
    "value",
    [
        object(),
        lambda: "x",
        print,
        settings,
        {"nested": [object()]},
        {1: "non-string key"},
        {"_private": "x"},
        b"bytes",
        {1, 2},
    ],
)
def test_context_refuses_non_plain_values(value):
    with pytest.raises(ContextError):
        validate_context({"x": value})


def test_context_refuses_model_instances_and_managers():
    from accounts.models import Workspace

    with pytest.raises(ContextError):
        validate_context({"workspace": Workspace(name="w", slug="w")})
    with pytest.raises(ContextError):
        validate_context({"objects": Workspace.objects})
    with pytest.raises(ContextError):
        compile_template("{{ x }}").render({"x": Workspace(name="w", slug="w")})


def test_context_accepts_plain_values_and_drops_str_subclasses():
    from django.utils.safestring import mark_safe

    plain = validate_context(
        {
            "s": mark_safe("<b>"),
            "n": 1,
            "f": 1.5,
            "b": True,
            "none": None,
            "d": dt.date(2025, 1, 1),
            "t": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
            "attributes": {"tags": ["a", "b"], "nested": {"k": 1}},
        }
    )
    assert type(plain["s"]) is str
    assert compile_template("{{ s }}", mode=Mode.HTML).render(plain) == "&lt;b&gt;"
    assert render("{{ attributes.tags }}", plain) == "a, b"


def test_template_size_is_bounded(settings):
    settings.CAMPAIGN_RENDER_MAX_BYTES = 1000
    with pytest.raises(TemplateError, match="larger than"):
        compile_template("x" * 1001)
    with pytest.raises(TemplateError, match="larger than"):
        compile_template("é" * 600)  # 1200 bytes in UTF-8


def test_output_size_is_bounded(settings):
    settings.CAMPAIGN_RENDER_MAX_BYTES = 10_000
    compiled = compile_template("{{ a }}" * 100)
    assert compiled.render({"a": "x" * 99}) == "x" * 9900
    with pytest.raises(RenderLimitError):
        compiled.render({"a": "x" * 101})


def test_render_time_is_bounded_for_the_largest_template():
    # No loops: the worst case is the largest template full of tags, nested conditions.
    tag = "{% if a %}{% if b %}{{ a|upper|default:'x'|truncatechars:50 }}{% endif %}{% endif %}"
    source = tag * (2 * 1024 * 1024 // len(tag) - 1)
    started = time.perf_counter()
    compiled = compile_template(source, mode=Mode.HTML)
    compiled.render({"a": "<v>", "b": 1})
    assert time.perf_counter() - started < 10


def test_deeply_nested_conditions_are_refused():
    with pytest.raises(TemplateError, match="nested too deeply"):
        compile_template("{% if a %}" * 11 + "{% endif %}" * 11)


def test_unresolved_tags_lists_names_the_audience_lacks():
    source = (
        "{{ first_name }} {{ attributes.plan }} {{ attributes.city }} {{ nickname }}"
        ' {{ attributes.team|default:"all" }} {% if attributes.vip %}x{% endif %}'
    )
    available = {"first_name", "email", "attributes.plan"}
    assert unresolved_tags(source, available) == ["attributes.city", "nickname"]
    assert unresolved_tags(compile_template(source), {*available, "attributes"}) == ["nickname"]
    with pytest.raises(TemplateError):
        unresolved_tags("{% load x %}", available)


@pytest.mark.parametrize("chunk", ["{{", "{%", "{{ a ", "{{{", "{% if a %}"])
def test_pathological_openers_fail_fast(chunk):
    started = time.perf_counter()
    with pytest.raises(TemplateError):
        compile_template(chunk * (1_000_000 // len(chunk)))
    assert time.perf_counter() - started < 5


def test_a_large_value_repeated_by_many_tags_fails_early():
    compiled = compile_template("{{a}}" * 400_000)
    started = time.perf_counter()
    with pytest.raises(RenderLimitError):
        compiled.render({"a": "x" * 100_000})
    assert time.perf_counter() - started < 1
