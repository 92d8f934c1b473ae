"""What each web UI page shows, read from the registry in one call per page.

Views call exactly one of these; they hold the queries so the views and
templates stay free of them. Nothing here changes state.
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import OuterRef, Q, Subquery

from controlplane.errors import MlcpError, NotFound
from registry import services
from registry.choices import CONTROLS, VersionControl, VersionStatus
from registry.models import AliasMove, AuditEvent, GateResult, ModelVersion, RegisteredModel
from registry.ui.evidence import gate_panel
from rollouts.choices import ACTIVE
from rollouts.models import Rollout

AUDIT_ROWS = 100
AUDIT_PAGE = 50
HIGHLIGHTED_ALIASES = ("production", "candidate")
# A per-class recall change of at least this many points is highlighted on the comparison page.
NOTABLE_RECALL_PTS = 1.0


def models_overview(query: dict | None = None) -> dict:
    """Every model (or those whose name, owner or description holds `q`) with its aliases and latest version."""
    latest = ModelVersion.objects.filter(model=OuterRef("pk")).order_by("-number")
    models = (RegisteredModel.objects
              .annotate(latest_number=Subquery(latest.values("number")[:1]),
                        latest_status=Subquery(latest.values("status")[:1]))
              .prefetch_related("aliases__version"))
    text = str((query or {}).get("q", "")).strip()[:100]
    if text:
        models = models.filter(Q(name__icontains=text) | Q(owner__icontains=text) | Q(description__icontains=text))
    rows = [{"model": m, "aliases": _aliases(m), "latest_number": m.latest_number,
             "latest_status": m.latest_status,
             "latest_status_label": VersionStatus(m.latest_status).label if m.latest_status else ""}
            for m in models]
    return {"rows": rows, "q": text}


def _aliases(model: RegisteredModel) -> list:
    # production and candidate first, the rest by name.
    rank = {name: i for i, name in enumerate(HIGHLIGHTED_ALIASES)}
    return sorted(model.aliases.all(), key=lambda a: (rank.get(a.name, len(rank)), a.name))


def model_page(name: str, query: dict | None = None) -> dict:
    """A model's versions (filtered by `status` and `tag`, "key" or "key=value"), the rollout in flight,
    alias history and one page (`page`) of its audit trail."""
    query = query or {}
    model = services.get_model(name)
    versions = (model.versions.select_related("parent", "created_by")
                .prefetch_related("derived", "aliases").order_by("-number"))
    filters = {}
    status = str(query.get("status", "")).strip()
    if status in VersionStatus.values:
        versions = versions.filter(status=status)
        filters["status"] = status
    tag = str(query.get("tag", "")).strip()[:200]
    if tag:
        key, _, value = tag.partition("=")
        # Tags are a JSON object; matching in Python keeps this the same on SQLite and PostgreSQL.
        keep = [v.pk for v in versions if key in (v.tags or {}) and (not value or str(v.tags[key]) == value)]
        versions = versions.filter(pk__in=keep)
        filters["tag"] = tag
    audit = Paginator(AuditEvent.objects.filter(model_name=model.name), AUDIT_PAGE)
    return {
        "model": model,
        "aliases": _aliases(model),
        "versions": versions,
        "filters": filters,
        "statuses": VersionStatus.choices,
        "in_flight": (Rollout.objects.select_related("version", "stable_version")
                      .filter(model=model, phase__in=ACTIVE).first()),
        "alias_moves": AliasMove.objects.filter(model=model).select_related("from_version", "to_version")[:AUDIT_ROWS],
        "audit": audit.get_page(query.get("page")),
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
        "rollouts": (Rollout.objects.select_related("version", "stable_version")
                     .filter(Q(version=version) | Q(stable_version=version)).order_by("-created_at", "-id")),
        "parent_rollbacks": (Rollout.objects.filter(version=version.parent, phase="rolled_back")
                             .order_by("-finished_at") if version.parent else []),
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


# ------------------------------------------------------------- comparison

def comparison_page(name: str, candidate: int | None = None, production: int | None = None) -> dict:
    """A candidate beside production: per-class recall (golden set) and latency (validation), each
    side's latest passing or failing gate; rows whose recall moved by `NOTABLE_RECALL_PTS` are marked.

    Without numbers the candidate is the `candidate` alias (else the newest version) and production the
    `production` alias.
    """
    model = services.get_model(name)
    left = _pick(model, candidate, "candidate")
    right = _pick(model, production, "production")
    left_golden, right_golden = _evidence(left, "golden_set"), _evidence(right, "golden_set")
    recall = _recall_rows(left_golden, right_golden)
    return {
        "model": model, "candidate": left, "production": right,
        "versions": model.versions.order_by("-number").values_list("number", flat=True),
        "recall": recall,
        "accuracy": (_get(left_golden, "accuracy"), _get(right_golden, "accuracy")),
        "latency": _latency_rows(_evidence(left, "validation"), _evidence(right, "validation")),
        "notable": NOTABLE_RECALL_PTS,
    }


def _pick(model, number, alias):
    if number is not None:
        return services.get_version(model.name, number)
    target = services.alias_target(model, alias)
    if target is None and alias == "candidate":
        target = model.versions.order_by("-number").first()
    if target is None:
        raise NotFound(f"'{model.name}' has no {alias} version to compare")
    return target


def _evidence(version, gate) -> dict:
    if version is None:
        return {}
    result = (GateResult.objects.filter(version=version, gate=gate, verdict__in=("pass", "fail"))
              .order_by("-finished_at", "-id").first())
    return result.evidence if result and isinstance(result.evidence, dict) else {}


def _get(evidence, key):
    value = evidence.get(key)
    return value if isinstance(value, (int, float)) else None


def _recall_rows(left: dict, right: dict) -> list[dict]:
    def by_name(evidence):
        return {str(c.get("name")): c.get("recall") for c in evidence.get("per_class") or [] if isinstance(c, dict)}

    a, b = by_name(left), by_name(right)
    rows = []
    for name in list(a) + [n for n in b if n not in a]:
        ra, rb = a.get(name), b.get(name)
        delta = (ra - rb) * 100 if isinstance(ra, (int, float)) and isinstance(rb, (int, float)) else None
        rows.append({"name": name, "candidate": ra, "production": rb, "delta": delta,
                     "notable": delta is not None and abs(delta) >= NOTABLE_RECALL_PTS})
    return rows


def _latency_rows(left: dict, right: dict) -> list[dict]:
    a, b = left.get("latency_ms") or {}, right.get("latency_ms") or {}
    rows = []
    for batch in sorted(set(a) | set(b), key=lambda k: (len(str(k)), str(k))):
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            va, vb = (a.get(batch) or {}).get(key), (b.get(batch) or {}).get(key)
            ratio = va / vb if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and vb else None
            rows.append({"batch": batch, "stat": key.removesuffix("_ms"), "candidate": va, "production": vb,
                         "ratio": ratio, "notable": ratio is not None and (ratio > 1.1 or ratio < 0.9)})
    return rows
