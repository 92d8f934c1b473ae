"""Django admin for registry rows: models are edited here; versions, aliases and every record only shown.

A version's status and an alias's target move only through the audited
services (the API and web UI); audit events, alias moves and gate results
are history, which a form must not be able to forge.
"""

from django import forms
from django.contrib import admin

from controlplane.admin import ReadOnlyAdmin
from controlplane.errors import InvalidInput
from registry.models import Alias, AliasMove, AuditEvent, GateResult, GoldenSet, ModelVersion, RegisteredModel
from rollouts.notifications import validate_webhook_url


class RegisteredModelForm(forms.ModelForm):
    class Meta:
        model = RegisteredModel
        fields = "__all__"

    def clean_notification_webhook(self):
        url = self.cleaned_data["notification_webhook"]
        try:
            return validate_webhook_url(url) if url else url
        except InvalidInput as exc:
            raise forms.ValidationError(exc.detail, code=exc.code) from None


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    form = RegisteredModelForm
    list_display = ["name", "task", "owner", "created_at"]
    search_fields = ["name", "owner"]


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "status", "format", "blob", "signer", "created_at"]
    list_filter = ["status", "format", "model"]
    search_fields = ["model__name", "blob__digest", "git_commit"]

    class Media:
        # The signature bundle is one long line of JSON and base64: without this the page is 8,000 px wide.
        css = {"all": ["ui/admin.css"]}


# Django's default plural of "alias" is "aliass"; set here rather than in Meta, which would need a migration.
Alias._meta.verbose_name_plural = "aliases"


@admin.register(Alias)
class AliasAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "version", "updated_at"]


@admin.register(AliasMove)
class AliasMoveAdmin(ReadOnlyAdmin):
    list_display = ["model", "alias_name", "from_version", "to_version", "actor", "at"]


@admin.register(GoldenSet)
class GoldenSetAdmin(ReadOnlyAdmin):
    list_display = ["model", "number", "num_examples", "blob", "created_at"]


@admin.register(GateResult)
class GateResultAdmin(ReadOnlyAdmin):
    list_display = ["version", "gate", "verdict", "isolation", "started_at", "finished_at"]
    list_filter = ["verdict", "gate"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor", "action", "model_name", "version_number", "from_state", "to_state"]
    list_filter = ["action"]
    search_fields = ["model_name", "actor", "reason"]
