"""Request parsers with limits (docs/security.md): JSON nested deeper than MAX_JSON_DEPTH is a
400, not a RecursionError (a 500) or a structure every later walk has to survive."""

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError


def json_depth_exceeds(value, limit: int) -> bool:
    """True when ``value`` nests lists/dicts deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.MAX_JSON_DEPTH
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON nested too deep (at most {limit} levels).") from None
        if json_depth_exceeds(data, limit):
            raise ParseError(f"JSON nested too deep (at most {limit} levels).")
        return data
