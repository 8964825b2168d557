import ast
import time
from pathlib import Path
from unittest import mock

import pytest
from django.core import signing
from django.urls import reverse

from compliance import tokens
from compliance.tokens import Purpose, TokenExpired, token_make, token_read

IDS = {"workspace_id": 7, "contact_id": 123456, "campaign_id": 42}
YEAR = 365 * 24 * 3600


def _signed_at(seconds_ago: int, **kwargs) -> str:
    """A token whose signed timestamp lies in the past (the signer's clock patched)."""
    past = time.time() - seconds_ago
    with mock.patch.object(
        signing.TimestampSigner,
        "timestamp",
        return_value=signing.b62_encode(int(past)),
    ):
        return token_make(**kwargs)


def test_round_trip_names_workspace_contact_campaign_and_list():
    token = token_make(purpose=Purpose.UNSUBSCRIBE, list_id=9, **IDS)
    claim = token_read(token, purpose=Purpose.UNSUBSCRIBE)
    assert (claim.workspace_id, claim.contact_id, claim.campaign_id, claim.list_id) == (
        7,
        123456,
        42,
        9,
    )
    assert claim.purpose == Purpose.UNSUBSCRIBE


def test_token_is_url_safe_and_compact():
    token = token_make(purpose=Purpose.UNSUBSCRIBE, **IDS)
    assert len(token) < 80
    assert all(c.isalnum() or c in "-_.:" for c in token)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1],  # truncated
        lambda t: t[: len(t) // 2],
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # tampered signature
        lambda t: "8" + t[1:],  # tampered workspace id
        lambda t: t.replace(":", "", 1),
        lambda t: "",
        lambda t: "garbage",
        lambda t: "x" * 500,
        lambda t: t + "%00",
    ],
)
def test_forged_tokens_are_rejected_without_a_query(mangle, db, django_assert_num_queries):
    token = token_make(purpose=Purpose.UNSUBSCRIBE, **IDS)
    with django_assert_num_queries(0):
        assert token_read(mangle(token), purpose=Purpose.UNSUBSCRIBE) is None


def test_cross_purpose_tokens_are_rejected():
    unsubscribe = token_make(purpose=Purpose.UNSUBSCRIBE, **IDS)
    preferences = token_make(purpose=Purpose.PREFERENCES, **IDS)
    assert token_read(unsubscribe, purpose=Purpose.PREFERENCES) is None
    assert token_read(preferences, purpose=Purpose.UNSUBSCRIBE) is None
    assert token_read(unsubscribe, purpose=Purpose.DOWNLOAD, max_age=60) is None


def test_signed_with_another_key_is_rejected(settings):
    token = token_make(purpose=Purpose.UNSUBSCRIBE, **IDS)
    settings.SECRET_KEY = "another-key-" + "x" * 40
    settings.SECRET_KEY_FALLBACKS = []
    assert token_read(token, purpose=Purpose.UNSUBSCRIBE) is None


def test_rotated_secret_key_with_fallback_keeps_old_links(settings):
    old_key = settings.SECRET_KEY
    token = token_make(purpose=Purpose.UNSUBSCRIBE, **IDS)
    settings.SECRET_KEY = "rotated-key-" + "y" * 40
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert token_read(token, purpose=Purpose.UNSUBSCRIBE).contact_id == 123456
    # New tokens are signed with the new key only.
    fresh = token_make(purpose=Purpose.UNSUBSCRIBE, **IDS)
    settings.SECRET_KEY_FALLBACKS = []
    assert token_read(fresh, purpose=Purpose.UNSUBSCRIBE) is not None
    assert token_read(token, purpose=Purpose.UNSUBSCRIBE) is None


@pytest.mark.parametrize("purpose", [Purpose.UNSUBSCRIBE, Purpose.PREFERENCES])
def test_unsubscribe_and_preference_tokens_never_expire(purpose):
    token = _signed_at(3 * YEAR, purpose=purpose, **IDS)
    assert token_read(token, purpose=purpose).contact_id == 123456
    with pytest.raises(ValueError, match="never expire"):
        token_read(token, purpose=purpose, max_age=60)


@pytest.mark.parametrize("purpose", [Purpose.CONFIRMATION, Purpose.DOWNLOAD])
def test_confirmation_and_download_tokens_expire(purpose):
    fresh = token_make(purpose=purpose, **IDS)
    assert token_read(fresh, purpose=purpose, max_age=3600).contact_id == 123456
    old = _signed_at(7200, purpose=purpose, **IDS)
    with pytest.raises(TokenExpired):
        token_read(old, purpose=purpose, max_age=3600)
    with pytest.raises(ValueError, match="max_age"):
        token_read(fresh, purpose=purpose)


def test_builders_use_base_url_and_match_the_url_patterns(settings):
    settings.BASE_URL = "https://mail.example.com"
    url = tokens.unsubscribe_url(workspace_id=1, contact_id=2, campaign_id=3)
    token = url.rsplit("/", 1)[1]
    assert url == "https://mail.example.com" + reverse("compliance:unsubscribe", args=[token])
    assert token_read(token, purpose=Purpose.UNSUBSCRIBE).campaign_id == 3
    url = tokens.preferences_url(workspace_id=1, contact_id=2)
    token = url.rsplit("/", 1)[1]
    assert url == "https://mail.example.com" + reverse("compliance:preferences", args=[token])


def test_tokens_module_is_a_leaf():
    tree = ast.parse(Path(tokens.__file__).read_text())
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"enum", "dataclasses", "django.conf", "django.core"}
