"""Who may see a page: every UI view is wrapped in `requires(role)` and renders with `page_context`."""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404

from controlplane.errors import NotFound
from controlplane.roles import Role, has_role, roles_of


def requires(role: Role):
    """Login for anonymous users, 403 for users without `role`; a domain NotFound becomes a 404 page."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, role):
                raise PermissionDenied(f"This page needs the '{role}' role.")
            try:
                return view(request, *args, **kwargs)
            except NotFound as exc:
                raise Http404(exc.detail) from None

        return wrapped

    return decorator


def page_context(request, page: dict) -> dict:
    """`page` plus what the shell's header and the pages' controls need to know about the user."""
    return page | {"roles": sorted(roles_of(request.user)), "is_approver": has_role(request.user, Role.APPROVER),
                   "is_oncall": has_role(request.user, Role.ONCALL)}
