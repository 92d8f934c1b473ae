"""Web UI views: authorize, call one function, render (or redirect with a message).

Anonymous users are sent to the login page; a signed-in user without the role
a page needs gets 403. Domain errors from approve/reject become messages.
"""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from controlplane.errors import MlcpError, NotFound
from controlplane.roles import Role, has_role, roles_of
from registry import services
from registry.ui import pages


def requires(role: Role):
    """Login for anonymous users, 403 for users without `role`; puts the user's roles in the request."""

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


def _context(request, page: dict) -> dict:
    return page | {"roles": sorted(roles_of(request.user)), "is_approver": has_role(request.user, Role.APPROVER)}


@require_GET
@requires(Role.VIEWER)
def model_list(request):
    return render(request, "registry/ui/model_list.html", _context(request, {"rows": pages.models_overview()}))


@require_GET
@requires(Role.VIEWER)
def model_detail(request, name):
    return render(request, "registry/ui/model_detail.html", _context(request, pages.model_page(name)))


@require_GET
@requires(Role.VIEWER)
def version_detail(request, name, number):
    page = pages.version_page(name, number, verify="verify" in request.GET)
    return render(request, "registry/ui/version_detail.html", _context(request, page))


@require_POST
@requires(Role.APPROVER)
def approve(request, name, number):
    return _decide(request, name, number, services.approve_version, "approved")


@require_POST
@requires(Role.APPROVER)
def reject(request, name, number):
    return _decide(request, name, number, services.reject_version, "rejected")


def _decide(request, name, number, decide, done: str):
    version = services.get_version(name, number)
    try:
        decide(version, actor=request.user, reason=request.POST.get("reason", "").strip())
    except MlcpError as exc:
        messages.error(request, f"Not {done}: {exc.detail}")
    else:
        messages.success(request, f"{version} {done}.")
    return redirect("ui:version", name=name, number=number)
