import factory
from django.contrib.auth import get_user_model

from apps.accounts.models import Membership
from apps.pipelines.models import Job, PipelineRun
from apps.projects.models import Environment, Project
from apps.releases.models import Deployment, Promotion, Release


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("pw-for-tests-123")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")


class EnvironmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Environment

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"env{n}")
    order = factory.Sequence(lambda n: n)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    project = factory.SubFactory(ProjectFactory)
    role = "viewer"


class RunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PipelineRun

    project = factory.SubFactory(ProjectFactory)
    number = factory.Sequence(lambda n: n + 1)
    ref = "main"
    commit_sha = "0123456789abcdef0123456789abcdef01234567"


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    run = factory.SubFactory(RunFactory)
    name = factory.Sequence(lambda n: f"job{n}")
    kind = "test"
    script = ["true"]


class ReleaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Release

    project = factory.SubFactory(ProjectFactory)
    version = factory.Sequence(lambda n: f"v{n}")
    commit_sha = "0123456789abcdef0123456789abcdef01234567"


class DeploymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Deployment

    release = factory.SubFactory(ReleaseFactory)
    environment = factory.LazyAttribute(lambda o: EnvironmentFactory(project=o.release.project))


class PromotionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Promotion

    release = factory.SubFactory(ReleaseFactory)
    environment = factory.LazyAttribute(
        lambda o: EnvironmentFactory(project=o.release.project, required_approvals=1)
    )
