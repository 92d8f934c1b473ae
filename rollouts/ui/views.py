"""Rollout web UI views: authorize (`ui.access.requires`), call one function, render or redirect.

Viewers read; pause, resume, abort and rollback need the `oncall` role (admins
have every role). Domain errors become messages on the page, never a 500.
"""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from controlplane.errors import MlcpError
from controlplane.roles import Role
from registry import services as registry
from rollouts import services
from rollouts.ui import pages
from ui.access import page_context, requires


@require_GET
@requires(Role.VIEWER)
def rollout_list(request):
    page = pages.rollouts_overview(query=request.GET)
    return render(request, "rollouts/ui/rollout_list.html", page_context(request, page))


@require_GET
@requires(Role.VIEWER)
def model_rollouts(request, name):
    page = pages.model_rollouts_page(name, query=request.GET)
    return render(request, "rollouts/ui/model_rollouts.html", page_context(request, page))


@require_GET
@requires(Role.VIEWER)
def rollout_detail(request, pk):
    return render(request, "rollouts/ui/rollout_detail.html", page_context(request, pages.rollout_page(pk)))


@require_POST
@requires(Role.ONCALL)
def pause(request, pk):
    return _control(request, pk, services.pause, "paused")


@require_POST
@requires(Role.ONCALL)
def resume(request, pk):
    return _control(request, pk, services.resume, "resumed")


@require_POST
@requires(Role.ONCALL)
def abort(request, pk):
    return _control(request, pk, services.abort, "aborted: all traffic goes back to stable")


def _control(request, pk, act, done: str):
    rollout = services.get_rollout(pk)
    try:
        act(rollout, actor=request.user, reason=request.POST.get("reason", "").strip())
    except MlcpError as exc:
        messages.error(request, f"Rollout {rollout.pk} not {done.split(':')[0]}: {exc.detail}")
    else:
        messages.success(request, f"Rollout {rollout.pk} {done}.")
    return redirect("rollouts_ui:rollout", pk=rollout.pk)


@require_POST
@requires(Role.ONCALL)
def rollback(request, name):
    model = registry.get_model(name)
    target = pages.rollback_target_of(model)["rollback_to"]
    # The form names the version it goes back to; if that changed since the page was drawn, ask again.
    if target is not None and request.POST.get("confirm") != f"v{target.number}":
        messages.error(request, f"Not rolled back: confirm that {model.name} goes back to v{target.number}.")
        return redirect("rollouts_ui:model", name=model.name)
    try:
        rollout = services.rollback(model, reason=request.POST.get("reason", "").strip(), actor=request.user)
    except MlcpError as exc:
        messages.error(request, f"Not rolled back: {exc.detail}")
        return redirect("rollouts_ui:model", name=model.name)
    if rollout.kind == "rollback":
        messages.success(request, f"Rolling {model.name} back to v{rollout.version.number} (rollout {rollout.pk}).")
    else:
        stable = f"v{rollout.stable_version.number}" if rollout.stable_version else "stable"
        messages.success(request, f"Rollout {rollout.pk} is rolling back from v{rollout.version.number} to {stable}.")
    return redirect("rollouts_ui:rollout", pk=rollout.pk)
