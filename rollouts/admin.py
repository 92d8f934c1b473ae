"""Django admin for rollouts: read-only; phases move only through the services."""

from django.contrib import admin

from rollouts.models import AnalysisRun, ControllerLease, Rollout, RolloutEvent


class RolloutEventInline(admin.TabularInline):
    model = RolloutEvent
    fields = ["at", "old", "new", "step", "actor", "reason"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Rollout)
class RolloutAdmin(admin.ModelAdmin):
    list_display = ["pk", "model", "version", "stable_version", "kind", "phase", "current_step", "created_at"]
    list_filter = ["phase", "kind", "model"]
    inlines = [RolloutEventInline]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AnalysisRun)
class AnalysisRunAdmin(admin.ModelAdmin):
    list_display = ["rollout", "step", "at", "verdict", "reason"]
    list_filter = ["verdict"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ControllerLease)
class ControllerLeaseAdmin(admin.ModelAdmin):
    list_display = ["holder", "expires_at"]
