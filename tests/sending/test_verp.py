"""VERP return paths name their delivery, survive lower- and upper-casing, and refuse
forgeries."""

import re

import pytest

from sending import verp

HOST = "bounces.news.example.com"


@pytest.mark.parametrize("delivery_id", [1, 35, 36, 123_456, 2**63 - 1])
def test_address_reads_back_to_its_delivery(delivery_id):
    address = verp.verp_address(delivery_id=delivery_id, local=verp.BOUNCES, domain=HOST)

    assert address.endswith(f"@{HOST}")
    assert verp.verp_read(address) == delivery_id
    assert verp.verp_read(address, local=verp.BOUNCES) == delivery_id
    assert verp.verp_read(f"<{address}>") == delivery_id


def test_token_is_lower_case_and_fits_a_local_part():
    address = verp.verp_address(delivery_id=2**63 - 1, local=verp.UNSUBSCRIBE, domain=HOST)
    local_part = address.partition("@")[0]

    assert re.fullmatch(r"unsubscribe\+[0-9a-z]+\.[2-7a-z]{16}", local_part)
    assert len(local_part) <= 64


def test_address_survives_an_mta_changing_its_case():
    address = verp.verp_address(delivery_id=987_654, domain=HOST)

    assert verp.verp_read(address.upper()) == 987_654
    assert verp.verp_read(address.lower()) == 987_654


def test_forged_and_altered_addresses_are_refused():
    address = verp.verp_address(delivery_id=500, domain=HOST)
    local_part, _, domain = address.partition("@")
    id_text, _, mac = local_part.partition("+")[2].partition(".")

    other_id = f"bounces+{verp.verp_token(delivery_id=501).partition('.')[0]}.{mac}@{domain}"
    flipped = mac[:-1] + ("a" if mac[-1] != "a" else "b")
    for forged in [
        other_id,  # another delivery's id under this MAC
        f"bounces+{id_text}.{flipped}@{domain}",
        f"bounces+{id_text}.{mac[:-1]}@{domain}",
        f"bounces+{id_text}@{domain}",
        f"bounces@{domain}",
        f"bounces+{id_text}.{mac}",  # no domain
        f"bounces+{id_text}.{mac[:-1]}é@{domain}",
        "",
        "x" * 400,
    ]:
        assert verp.verp_read(forged) is None, forged


def test_token_of_one_local_part_is_not_good_for_another():
    bounce = verp.verp_address(delivery_id=77, local=verp.BOUNCES, domain=HOST)
    token = bounce.partition("+")[2]

    assert verp.verp_read(f"unsubscribe+{token}") is None
    assert verp.verp_read(bounce, local=verp.UNSUBSCRIBE) is None


def test_addresses_made_before_a_key_rotation_still_read(settings):
    address = verp.verp_address(delivery_id=4040, domain=HOST)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-for-this-test-0123456789-abcdefghijklmnopqrstu"

    assert verp.verp_read(address) == 4040
    settings.SECRET_KEY_FALLBACKS = []
    assert verp.verp_read(address) is None


def test_only_positive_delivery_ids_make_tokens():
    for bad in (0, -5):
        with pytest.raises(ValueError, match="positive"):
            verp.verp_token(delivery_id=bad)
