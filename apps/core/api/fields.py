"""Serializer fields the API uses in place of DRF's defaults."""

from rest_framework import serializers


class JSONField(serializers.JSONField):
    """DRF's JSONField, but a form or multipart value of ``null`` counts as null: DRF checks
    for null before decoding the text, so ``target=null`` in a multipart body reached the
    database as NULL (a 500) instead of "This field may not be null." (a 400)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value is None and not self.allow_null:
            self.fail("null")
        return value
