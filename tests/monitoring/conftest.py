import pytest

from apps.monitoring import signals


@pytest.fixture
def production(project):
    """The project's production environment (project_create makes one)."""
    return project.environments.get(name="production")


@pytest.fixture
def heard():
    """Every alert_status_changed and alerts_notify the code sends, as (signal name, kwargs)."""
    got: list[tuple[str, dict]] = []

    def on_changed(sender, **kwargs):
        got.append(("changed", kwargs))

    def on_notify(sender, **kwargs):
        got.append(("notify", kwargs))

    signals.alert_status_changed.connect(on_changed, weak=False)
    signals.alerts_notify.connect(on_notify, weak=False)
    yield got
    signals.alert_status_changed.disconnect(on_changed)
    signals.alerts_notify.disconnect(on_notify)
