"""Roles are Django groups; every API endpoint names the role it needs.

`viewer` reads; `ci` registers versions and starts rollouts; `approver`
approves or rejects; `oncall` pauses, aborts and rolls back; `admin` does all.
Every role can read.
"""

from enum import StrEnum

from rest_framework.permissions import SAFE_METHODS, BasePermission


class Role(StrEnum):
    VIEWER = "viewer"
    CI = "ci"
    APPROVER = "approver"
    ONCALL = "oncall"
    ADMIN = "admin"


def roles_of(user) -> set[Role]:
    if not user or not user.is_authenticated:
        return set()
    if user.is_superuser:
        return set(Role)
    names = {g.name for g in user.groups.all()}
    return {role for role in Role if role.value in names}


def has_role(user, role: Role) -> bool:
    held = roles_of(user)
    if Role.ADMIN in held:
        return True
    if role == Role.VIEWER:
        return bool(held)
    return role in held


class IsViewer(BasePermission):
    """Any role may read; the default for endpoints that only read."""

    message = "This token has no mlcp role; ask an admin to grant one."

    def has_permission(self, request, view):
        return has_role(request.user, Role.VIEWER)


class ActionRoles(BasePermission):
    """Reads `view.action_roles` ({action name: Role}); safe methods need `viewer`."""

    def has_permission(self, request, view):
        needed = getattr(view, "action_roles", {}).get(getattr(view, "action", None))
        if needed is None:
            needed = Role.VIEWER if request.method in SAFE_METHODS else Role.ADMIN
        self.message = f"This action needs the '{needed}' role."
        return has_role(request.user, needed)
