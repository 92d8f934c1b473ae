"""Django admin for rollouts: shown only; phases move through the services, analysis runs and webhook
notifications (with their delivery attempts) are history."""

from django.contrib import admin

from controlplane.admin import ReadOnlyAdmin
from rollouts.models import AnalysisRun, ControllerLease, Notification, NotificationAttempt, Rollout, RolloutEvent


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


class NotificationAttemptInline(admin.TabularInline):
    model = NotificationAttempt
    fields = ["number", "started_at", "duration_s", "status_code", "error", "sender"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """Requeue dead letters with `manage.py sendnotifications --requeue-dead`, not here."""

    list_display = ["pk", "rollout", "event", "state", "attempts", "next_attempt_at", "delivered_at", "last_error"]
    list_filter = ["state", "event"]
    inlines = [NotificationAttemptInline]


@admin.register(ControllerLease)
class ControllerLeaseAdmin(admin.ModelAdmin):
    list_display = ["holder", "expires_at"]
