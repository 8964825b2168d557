import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from accounts import encryption


def test_round_trip_and_ciphertext_hides_plaintext():
    token = encryption.encrypt("-----BEGIN PRIVATE KEY----- secret")
    assert "secret" not in token
    assert encryption.decrypt(token) == "-----BEGIN PRIVATE KEY----- secret"


def test_rotation_keeps_old_ciphertexts_readable(settings):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    sealed_with_old = encryption.encrypt("smtp-password")
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    assert encryption.decrypt(sealed_with_old) == "smtp-password"
    resealed = encryption.reencrypt(sealed_with_old)
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    assert encryption.decrypt(resealed) == "smtp-password"
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEY"):
        encryption.decrypt(sealed_with_old)


def test_field_is_independent_of_secret_key(settings):
    token = encryption.encrypt("dkim-key")
    settings.SECRET_KEY = "an-entirely-different-secret-key-" + "x" * 40
    assert encryption.decrypt(token) == "dkim-key"


@pytest.mark.django_db
def test_encrypted_field_stores_ciphertext_in_postgres():
    from django.db import connection, models
    from django.test.utils import isolate_apps

    with isolate_apps("accounts"):

        class Secretive(models.Model):
            secret = encryption.EncryptedTextField()

            class Meta:
                app_label = "accounts"

        with connection.schema_editor() as editor:
            editor.create_model(Secretive)
        try:
            row = Secretive.objects.create(secret="hunter2")
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT secret FROM {Secretive._meta.db_table}")
                [(raw,)] = cursor.fetchall()
            assert "hunter2" not in raw
            assert Secretive.objects.get(pk=row.pk).secret == "hunter2"
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(Secretive)
