"""The OpenAPI schema's house rules: every operation documents the errors it can answer.

An operation's own ``@extend_schema(responses=...)`` wins for a code it names; the codes it does
not name are filled in here, so a client (and schemathesis, ``tests/contract/``) knows every
answer the API can give:

- 400 when the operation takes a body or query parameters (the fields that are wrong, or a
  ``detail``),
- 401 and 403 when it needs a signed-in user (no or a bad token; a role you do not hold),
- 404 when its path names an object (not there, or not visible to you),
- 409 for writes (refused as things stand: an illegal transition, a conflict).
"""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorSerializer(serializers.Serializer):
    """What every refusal answers: a message, and a machine-readable code when there is one."""

    detail = serializers.CharField()
    code = serializers.CharField(required=False)


class ValidationErrorSerializer(serializers.Serializer):
    """A 400: each field that is wrong with its messages, or ``detail`` (a message, a list of
    messages, or messages by field) when it is about the request as a whole."""

    detail = serializers.JSONField(required=False)
    code = serializers.CharField(required=False)

    class Meta:
        # Any other key is a field of the request body, with its messages.
        ref_name = "ValidationError"


def _model_fields(field) -> list:
    """The model fields a serializer field's source walks through (``[]``: not a model's)."""
    parent = getattr(field, "parent", None)
    model = getattr(getattr(parent, "Meta", None), "model", None)
    source_attrs = getattr(field, "source_attrs", None) or []
    if model is None or not source_attrs or field.source == "*":
        return []
    found = []
    for attr in source_attrs:
        if model is None:
            return []
        try:
            model_field = model._meta.get_field(attr)
        except Exception:  # a property or a method: nothing to say
            return []
        found.append(model_field)
        model = getattr(model_field, "related_model", None)
    return found


def _source_is_nullable(field) -> bool:
    """Whether the model column(s) behind a serializer field may be NULL on the way."""
    return any(getattr(f, "null", False) for f in _model_fields(field))


def _may_be_blank(field) -> bool:
    if getattr(field, "allow_blank", False):
        return True
    walked = _model_fields(field)
    return bool(walked) and getattr(walked[-1], "blank", False)


def _error(serializer, description):
    return OpenApiResponse(serializer, description=description)


class HouseAutoSchema(AutoSchema):
    """drf-spectacular's ``AutoSchema`` plus the default error responses above."""

    def _needs_user(self) -> bool:
        return not all(isinstance(p, AllowAny) for p in self.view.get_permissions())

    def _default_errors(self) -> dict:
        errors = {}
        has_query = bool(self._get_filter_parameters() or self._get_pagination_parameters())
        if self.method in ("POST", "PUT", "PATCH") or has_query or self._has_query_override():
            errors["400"] = _error(ValidationErrorSerializer, "Invalid input: what is wrong.")
        if self._needs_user():
            errors["401"] = _error(ErrorSerializer, "No valid credentials.")
            errors["403"] = _error(ErrorSerializer, "Your role does not allow it.")
        if "{" in self.path or self._get_pagination_parameters() or self._is_own_object():
            errors["404"] = _error(ErrorSerializer, "Not found, or not visible to you.")
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            errors["409"] = _error(
                ErrorSerializer, "Refused as things stand (e.g. an illegal state transition)."
            )
        return errors

    def _is_own_object(self) -> bool:
        """``/me/...``: the signed-in user's own object, which may not exist (yet)."""
        return "/me/" in self.path

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        # A read-only field (StringRelatedField, SlugRelatedField, a dotted source) shows a
        # model column that may be NULL: say so, as ModelSerializer does for writable ones.
        if not getattr(field, "allow_null", False) and _source_is_nullable(field):
            field.allow_null = True
        return super()._map_serializer_field(field, direction, bypass_extensions)

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        properties = schema.get("properties", {})
        for name, field in serializer.fields.items():
            prop = properties.get(field.field_name or name)
            if (
                isinstance(field, serializers.URLField)
                and prop is not None
                and prop.get("format") == "uri"
                and _may_be_blank(field)
            ):
                # "" is not a URI: a URL that may be empty is a URL or the empty string.
                del prop["format"]
                prop["anyOf"] = [{"format": "uri"}, {"maxLength": 0}]
        return schema

    def _has_query_override(self) -> bool:
        overrides = self.get_override_parameters()
        return any(getattr(p, "location", "query") == "query" for p in overrides)

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction=direction)
        if direction != "response":
            return responses
        for code, response in self._default_errors().items():
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code, None, direction)
        return responses
