"""Filters every app's API shares."""

from datetime import UTC

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date and time, turned into UTC before it reaches the database: PostgreSQL
    refuses offsets beyond ±15:59 that Python accepts (``+19:45`` was a 500)."""

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except (OverflowError, ValueError):
            raise forms.ValidationError("Enter a date and time that exists.") from None


class IsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField
