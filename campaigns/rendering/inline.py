"""CSS inlining with css-inline, once per campaign, before personalisation.

`@media` rules (responsive layouts, `prefers-color-scheme`) stay in a `<style>` block, since
they cannot be inlined; remote stylesheets are never fetched.
"""

import css_inline


def inline_css(html: str) -> str:
    """The HTML with its `<style>` rules moved into style attributes."""
    inliner = css_inline.CSSInliner(
        keep_at_rules=True, load_remote_stylesheets=False, keep_link_tags=False
    )
    return inliner.inline(html)
