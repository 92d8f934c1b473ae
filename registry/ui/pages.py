"""What each web UI page shows, read from the registry in one call per page.

Views call exactly one of these; they hold the queries so the views and
templates stay free of them. Nothing here changes state.
"""

from __future__ import annotations

from django.db.models import OuterRef, Subquery

from controlplane.errors import MlcpError
from registry import services
from registry.choices import CONTROLS, VersionControl, VersionStatus
from registry.models import AliasMove, AuditEvent, ModelVersion, RegisteredModel
from registry.ui.evidence import gate_panel

AUDIT_ROWS = 100
HIGHLIGHTED_ALIASES = ("production", "candidate")


def models_overview() -> list[dict]:
    """Every model with its aliases and its latest version's number and status."""
    latest = ModelVersion.objects.filter(model=OuterRef("pk")).order_by("-number")
    models = (RegisteredModel.objects
              .annotate(latest_number=Subquery(latest.values("number")[:1]),
                        latest_status=Subquery(latest.values("status")[:1]))
              .prefetch_related("aliases__version"))
    return [{"model": m, "aliases": _aliases(m), "latest_number": m.latest_number,
             "latest_status": m.latest_status,
             "latest_status_label": VersionStatus(m.latest_status).label if m.latest_status else ""}
            for m in models]


def _aliases(model: RegisteredModel) -> list:
    # production and candidate first, the rest by name.
    rank = {name: i for i, name in enumerate(HIGHLIGHTED_ALIASES)}
    return sorted(model.aliases.all(), key=lambda a: (rank.get(a.name, len(rank)), a.name))


def model_page(name: str) -> dict:
    """A model's versions (with lineage and aliases), alias history and audit trail."""
    model = services.get_model(name)
    versions = (model.versions.select_related("parent", "created_by")
                .prefetch_related("derived", "aliases").order_by("-number"))
    return {
        "model": model,
        "aliases": _aliases(model),
        "versions": versions,
        "alias_moves": AliasMove.objects.filter(model=model).select_related("from_version", "to_version")[:AUDIT_ROWS],
        "audit": AuditEvent.objects.filter(model_name=model.name)[:AUDIT_ROWS],
    }


def version_page(name: str, number: int, *, verify: bool = False) -> dict:
    """One version: metadata, signature, lineage, gate evidence drawn, and a fresh verification on request."""
    version = services.get_version(name, number)
    version = (ModelVersion.objects.select_related("model", "blob", "parent", "created_by")
               .prefetch_related("derived", "aliases").get(pk=version.pk))
    production = services.alias_target(version.model, "production")
    return {
        "model": version.model,
        "version": version,
        "production": production,
        "gates": [gate_panel(r) for r in version.gate_results.order_by("position")],
        "verification": _verification(version) if verify else None,
        "can_approve": VersionControl.APPROVE in CONTROLS[version.status],
        "can_reject": VersionControl.REJECT in CONTROLS[version.status],
        "audit": AuditEvent.objects.filter(model_name=version.model.name, version_number=version.number)[:AUDIT_ROWS],
        "ci_link": version.ci_run_url if version.ci_run_url.startswith(("https://", "http://")) else "",
    }


def _verification(version: ModelVersion) -> dict:
    """Re-hash the stored bytes and check the signature now; a missing blob or bad bundle is a failure too."""
    try:
        report = services.verify_version(version)
    except MlcpError as exc:
        return {"ok": False, "detail": exc.detail, "signer": ""}
    return report.as_dict()
