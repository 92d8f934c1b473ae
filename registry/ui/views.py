"""Web UI views: authorize, call one function, render (or redirect with a message).

Anonymous users are sent to the login page; a signed-in user without the role
a page needs gets 403. Domain errors from approve/reject become messages.
"""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from controlplane.errors import MlcpError
from controlplane.roles import Role
from registry import services
from registry.ui import pages
from ui.access import page_context, requires


@require_GET
@requires(Role.VIEWER)
def model_list(request):
    return render(request, "registry/ui/model_list.html", page_context(request, pages.models_overview(request.GET)))


@require_GET
@requires(Role.VIEWER)
def model_detail(request, name):
    return render(request, "registry/ui/model_detail.html", page_context(request, pages.model_page(name, request.GET)))


@require_GET
@requires(Role.VIEWER)
def compare(request, name):
    page = pages.comparison_page(name, _number(request.GET.get("candidate")), _number(request.GET.get("production")))
    return render(request, "registry/ui/compare.html", page_context(request, page))


def _number(value) -> int | None:
    return int(value) if str(value or "").isdigit() else None


@require_GET
@requires(Role.VIEWER)
def version_detail(request, name, number):
    page = pages.version_page(name, number, verify="verify" in request.GET)
    return render(request, "registry/ui/version_detail.html", page_context(request, page))


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
    return redirect("registry_ui:version", name=name, number=number)
