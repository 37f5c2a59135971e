from django import forms
from django.contrib import admin

from .models import Environment, FreezeWindow, Project, Variable


class EnvironmentInline(admin.TabularInline):
    model = Environment
    extra = 0
    fields = [
        "name",
        "order",
        "auto_deploy",
        "required_approvals",
        "approver_role",
        "deployer",
        "service_port",
    ]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "git_provider", "default_branch", "created"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [EnvironmentInline]
    exclude = ["webhook_secret", "webhook_signing_token", "git_api_token"]


class FreezeWindowInline(admin.TabularInline):
    model = FreezeWindow
    extra = 0


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["__str__", "order", "auto_deploy", "required_approvals", "deployer"]
    list_filter = ["project", "deployer", "auto_deploy"]
    inlines = [FreezeWindowInline]


class VariableForm(forms.ModelForm):
    # Never render a secret back into the page; leave empty to keep the stored value.
    value = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="Leave empty to keep the current value.",
    )

    class Meta:
        model = Variable
        fields = ["project", "environment", "key", "value", "is_secret", "protected"]

    def clean_value(self):
        value = self.cleaned_data["value"]
        if not value and self.instance.pk:
            return self.instance.value
        return value


@admin.register(Variable)
class VariableAdmin(admin.ModelAdmin):
    form = VariableForm
    list_display = ["key", "project", "environment", "is_secret", "protected", "modified"]
    list_filter = ["project", "is_secret", "protected"]
    search_fields = ["key"]
