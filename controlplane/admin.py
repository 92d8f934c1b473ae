"""Django admin: API tokens by prefix (never a key), and the read-only base for records of what happened."""

from django.contrib import admin
from rest_framework.authtoken.models import TokenProxy

from controlplane.models import ApiToken
from controlplane.tokens import revoke_tokens


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by mlcp's services: the admin may look, never add, edit or delete.

    For history (audit, alias moves, gate results, analysis runs), a row typed
    into a form would read exactly like one a service wrote; for state
    (versions, rollouts), only the services check a move and record it.
    """

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# DRF's token admin lists every plain key; mlcp does not accept those keys (controlplane.tokens).
if admin.site.is_registered(TokenProxy):
    admin.site.unregister(TokenProxy)


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens are minted by `manage.py createtoken` (the only time a key is shown) and revoked here or by
    `manage.py revoketoken`; the digest is not shown either, it is of no use to a reader."""

    list_display = ["prefix", "user", "created_at", "expires_at", "revoked_at"]
    list_filter = ["revoked_at", "expires_at"]
    search_fields = ["prefix", "user__username"]
    fields = ["prefix", "user", "created_at", "expires_at", "revoked_at"]
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke(self, request, queryset):
        self.message_user(request, f"Revoked {revoke_tokens(queryset)} token(s).")

    def has_revoke_permission(self, request):
        # The form cannot change a token, but revoking one is a change: it needs that permission.
        return request.user.has_perm("controlplane.change_apitoken")
