import pytest
from django.db import connection
from django.urls import reverse

from apps.core.fields import decrypt
from apps.projects.models import Project, Variable
from apps.projects.services import variable_set

pytestmark = pytest.mark.django_db

VALUE = "hunter2-very-secret-value"


def _raw(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def test_variable_value_is_encrypted_at_rest(project, admin_user):
    variable = variable_set(
        project=project, key="API_KEY", value=VALUE, is_secret=True, actor=admin_user
    )
    raw = _raw("projects_variable", "value", variable.pk)
    assert VALUE not in raw
    assert raw.startswith("fernet:")
    assert decrypt(raw) == VALUE
    assert Variable.objects.get(pk=variable.pk).value == VALUE


def test_project_webhook_secret_and_token_are_encrypted(project):
    project.webhook_secret = "whsec-" + VALUE
    project.git_api_token = "ghp-" + VALUE
    project.save()
    assert VALUE not in _raw("projects_project", "webhook_secret", project.pk)
    assert VALUE not in _raw("projects_project", "git_api_token", project.pk)
    fresh = Project.objects.get(pk=project.pk)
    assert fresh.webhook_secret == "whsec-" + VALUE


def test_secret_value_never_in_audit_log_or_api(project, admin_user, api):
    from apps.core.models import AuditEvent

    variable_set(project=project, key="API_KEY", value=VALUE, is_secret=True, actor=admin_user)
    for event in AuditEvent.objects.all():
        assert VALUE not in str(event.data) + event.reason + event.object_repr
    response = api(admin_user).get(reverse("project-detail", args=[project.slug]))
    assert VALUE not in response.content.decode()


def test_encrypted_field_refuses_equality_lookups(project):
    with pytest.raises(Exception, match="Unsupported lookup"):
        list(Variable.objects.filter(value=VALUE))


def test_key_rotation_keeps_old_values_readable(project, admin_user, settings):
    from cryptography.fernet import Fernet

    variable = variable_set(project=project, key="K", value=VALUE, actor=admin_user)
    settings.FIELD_ENCRYPTION_KEYS = [
        Fernet.generate_key().decode(),
        *settings.FIELD_ENCRYPTION_KEYS,
    ]
    assert Variable.objects.get(pk=variable.pk).value == VALUE


def test_rotate_encryption_keys_command(project, admin_user, settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    variable = variable_set(project=project, key="K", value=VALUE, actor=admin_user)
    old_keys = list(settings.FIELD_ENCRYPTION_KEYS)
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, *old_keys]
    call_command("rotate_encryption_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is gone now
    assert Variable.objects.get(pk=variable.pk).value == VALUE
    raw = _raw("projects_variable", "value", variable.pk)
    assert Fernet(new_key).decrypt(raw.removeprefix("fernet:").encode()).decode() == VALUE


def test_pipeline_spec_schema_is_published(client):
    response = client.get("/api/v1/pipeline-spec/schema.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "jobs" in schema["required"]
