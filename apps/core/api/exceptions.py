"""Turn service errors into API answers in one place (409 for illegal transitions)."""

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.database import UNAVAILABLE_BODY, UNAVAILABLE_HEADERS, is_database_unavailable
from apps.core.exceptions import ServiceError

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        return Response({"detail": exc.message, "code": exc.code}, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        return Response({"detail": detail, "code": "invalid"}, status=status.HTTP_400_BAD_REQUEST)
    # The last net (the serializers check lengths and nulls first): input the database refuses
    # is the client's mistake, not a server error; the statement's transaction rolled back.
    if isinstance(exc, DataError):
        logger.warning("database refused the input: %s", exc)
        return Response(
            {"detail": "A value is out of range or too long.", "code": "invalid"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, IntegrityError):
        logger.warning("database constraint refused the input: %s", exc)
        return Response(
            {
                "detail": "The input conflicts with what is stored (a missing or duplicate value).",
                "code": "conflict",
            },
            status=status.HTTP_409_CONFLICT,
        )
    # The database is away (restarted, unreachable): 503 with Retry-After, so a client tries
    # again instead of reporting a server error.
    if is_database_unavailable(exc):
        logger.warning("database unavailable: %s", exc)
        return Response(UNAVAILABLE_BODY, status=503, headers=UNAVAILABLE_HEADERS)
    return drf_exception_handler(exc, context)
