"""Django admin for registry rows; versions and audit are read-only there."""

from django.contrib import admin

from registry.models import Alias, AliasMove, AuditEvent, GoldenSet, ModelVersion, RegisteredModel


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ["name", "task", "owner", "created_at"]
    search_fields = ["name", "owner"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "format", "blob", "signer", "created_at"]
    list_filter = ["status", "format", "model"]
    search_fields = ["model__name", "blob__digest", "git_commit"]

    def has_change_permission(self, request, obj=None):
        return False  # versions are immutable; status moves through the API's audited services


@admin.register(Alias)
class AliasAdmin(admin.ModelAdmin):
    list_display = ["__str__", "version", "updated_at"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AliasMove)
class AliasMoveAdmin(admin.ModelAdmin):
    list_display = ["model", "alias_name", "from_version", "to_version", "actor", "at"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(GoldenSet)
class GoldenSetAdmin(admin.ModelAdmin):
    list_display = ["model", "number", "num_examples", "blob", "created_at"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["at", "actor", "action", "model_name", "version_number", "from_state", "to_state"]
    list_filter = ["action"]
    search_fields = ["model_name", "actor", "reason"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
