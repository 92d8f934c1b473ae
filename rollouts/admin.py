"""Django admin for rollouts: shown only; phases move through the services, analysis runs are history."""

from django.contrib import admin

from controlplane.admin import ReadOnlyAdmin
from rollouts.models import AnalysisRun, ControllerLease, Rollout, RolloutEvent


class RolloutEventInline(admin.TabularInline):
    model = RolloutEvent
    fields = ["at", "old", "new", "step", "actor", "reason"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Rollout)
class RolloutAdmin(ReadOnlyAdmin):
    list_display = ["pk", "model", "version", "stable_version", "kind", "phase", "current_step", "created_at"]
    list_filter = ["phase", "kind", "model"]
    inlines = [RolloutEventInline]


@admin.register(AnalysisRun)
class AnalysisRunAdmin(ReadOnlyAdmin):
    list_display = ["rollout", "step", "at", "verdict", "reason"]
    list_filter = ["verdict"]


@admin.register(ControllerLease)
class ControllerLeaseAdmin(admin.ModelAdmin):
    list_display = ["holder", "expires_at"]
