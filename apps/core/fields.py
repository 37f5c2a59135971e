"""A text field stored encrypted (Fernet: AES-128-CBC + HMAC-SHA256) with keys from settings.

The first key in ``FIELD_ENCRYPTION_KEYS`` encrypts; every key decrypts, so a key is rotated by
putting the new one first and running ``manage.py rotate_encryption_keys``.
"""

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet:"


@cache
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        # Development fallback only (production settings refuse to start without keys).
        derived = base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest())
        keys = (derived.decode(),)
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "CONTROLPLANE_ENCRYPTION_KEYS must hold Fernet keys (32 url-safe base64 bytes)."
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(value: str) -> str:
    return PREFIX + fernet().encrypt(value.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise ImproperlyConfigured("An encrypted column holds a value that is not encrypted.")
    try:
        return fernet().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "Cannot decrypt a secret: none of CONTROLPLANE_ENCRYPTION_KEYS matches it."
        ) from exc


class EncryptedTextField(models.TextField):
    """Plain ``str`` in Python, ciphertext in the database. Not searchable or orderable."""

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_lookup(self, lookup_name):
        if lookup_name != "isnull":  # ciphertexts differ each time: no equality
            return None
        return super().get_lookup(lookup_name)
