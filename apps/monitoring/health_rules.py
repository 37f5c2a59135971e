"""The service rules in the rules registry (``rules.py``, evaluated every
``CONTROLPLANE_RULES_INTERVAL`` seconds): ``service_down``, ``error_rate``, ``latency_p95``,
``cpu`` and ``memory``, each judged on the latest probe of every deployed environment
(``services_health.py``). Listed in ``rules.RULE_MODULES``."""

from collections.abc import Iterator
from datetime import datetime

from .rules import Firing, rule
from .services_health import RULES, service_alerts


def _register(name: str) -> None:
    @rule(name)
    def evaluate(now: datetime) -> Iterator[Firing]:
        for found in service_alerts(name, now=now):
            yield Firing(**found)

    evaluate.__name__ = evaluate.__qualname__ = name


for _name in RULES:
    _register(_name)
