"""The registry's domain functions: what views, tasks and commands call.

Each function takes plain values and rows, enforces the registry's rules,
writes the audit trail, and raises a `controlplane.errors` error otherwise.
"""

import logging
import zipfile
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from controlplane import untrusted_json
from controlplane.errors import Conflict, Forbidden, IllegalTransition, IntegrityFailure, InvalidInput, NotFound
from registry import pipeline, signing
from registry.choices import (CONTROL_TARGETS, CONTROLS, TRANSITIONS, ArtifactFormat, SignatureSource,
                              VersionControl, VersionStatus)
from registry.gate_verdicts import GATE_TRANSITIONS
from registry.models import (Alias, AliasMove, AuditEvent, Blob, GateResult, GoldenSet, ModelVersion,
                             RegisteredModel)
from registry.onnx_graph import read_onnx_signature
from registry.storage import BlobStore, StagedBlob, default_store

log = logging.getLogger(__name__)
MAX_BUNDLE_BYTES = 1024 * 1024


def actor_name(user) -> str:
    if user is None:
        return "system"
    return getattr(user, "username", None) or str(user)


def record_audit(actor, action: str, *, model_name="", version_number=None, from_state="",
                 to_state="", reason="", **detail) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor_name(actor) if not isinstance(actor, str) else actor,
        action=action,
        model_name=model_name,
        version_number=version_number,
        from_state=from_state,
        to_state=to_state,
        reason=reason,
        detail=detail,
    )


# ----------------------------------------------------------------- models

def get_model(name: str) -> RegisteredModel:
    try:
        return RegisteredModel.objects.get(name=name)
    except RegisteredModel.DoesNotExist:
        raise NotFound(f"model '{name}' is not registered") from None


def get_version(model_name: str, number: int) -> ModelVersion:
    try:
        return ModelVersion.objects.select_related("model", "blob").get(model__name=model_name, number=number)
    except ModelVersion.DoesNotExist:
        raise NotFound(f"model '{model_name}' has no version {number}") from None


# ---------------------------------------------------------------- ingest

@dataclass
class VersionMetadata:
    format: str = ArtifactFormat.ONNX
    git_commit: str = ""
    ci_run_url: str = ""
    training_data_digest: str = ""
    tags: dict | None = None
    parent_number: int | None = None
    derivation: str = ""
    declared_signature: dict | None = None


def ingest_version(model: RegisteredModel, staged: StagedBlob, artifact_name: str, meta: VersionMetadata,
                   *, actor, declared_digest: str | None = None, bundle_json: str | None = None) -> ModelVersion:
    """Turn staged bytes into a signed, numbered version; all or nothing.

    The blob is made durable and signed (or its client bundle verified)
    before the version row is written in one transaction; any failure
    leaves no version behind. Staged bytes are removed; bytes already
    committed stay, unreferenced and unreachable, until the sweep removes
    them (`claim_blob`).
    """
    try:
        digest = staged.digest or staged.finish()
        if staged.size == 0:
            raise InvalidInput("the artifact is empty", code="empty_artifact")
        if declared_digest and declared_digest.lower().removeprefix("sha256:") != digest:
            raise IntegrityFailure(
                f"the upload hashes to sha256:{digest}, not the declared {declared_digest}; nothing was stored",
                code="digest_mismatch", expected=declared_digest, actual=digest,
            )
        graph = _inspect_artifact(staged, meta.format)
        if bundle_json is not None:
            verified = signing.verify_bundle(bundle_json, digest)
            bundle, source = bundle_json, SignatureSource.CLIENT
        else:
            bundle = signing.sign_digest(digest, artifact_name)
            verified = signing.VerifiedSignature(digest, signing.active_public_key().key_id,
                                                 signing.active_public_key().name)
            source = SignatureSource.REGISTRY
        claim_blob(digest, staged.size)
        staged.commit()
    except BaseException:
        staged.discard()
        raise
    return _create_version_row(model, digest, staged.size, artifact_name, meta, graph,
                               bundle, source, verified, actor)


def _inspect_artifact(staged: StagedBlob, artifact_format: str) -> dict:
    if artifact_format == ArtifactFormat.ONNX:
        with staged.open() as fh:
            return read_onnx_signature(fh, staged.size)
    if artifact_format == ArtifactFormat.TORCH_EXPORT:
        # A torch.export archive is a zip; its graph is read when the validation gate converts it.
        with staged.open() as fh:
            is_zip = zipfile.is_zipfile(fh)
        if not is_zip:
            raise InvalidInput("a .pt2 artifact must be a torch.export archive (a zip file)",
                               code="malformed_artifact")
        return {"inputs": [], "outputs": [], "note": "signature read when converted to ONNX by the validation gate"}
    raise InvalidInput(f"unknown artifact format '{artifact_format}'; use onnx or pt2", code="invalid_format")


@transaction.atomic
def _create_version_row(model, digest, size, artifact_name, meta, graph, bundle, source, verified, actor):
    model = RegisteredModel.objects.select_for_update().get(pk=model.pk)
    blob = _claimed_blob(digest)
    parent = None
    if meta.parent_number is not None:
        parent = ModelVersion.objects.filter(model=model, number=meta.parent_number).first()
        if parent is None:
            raise InvalidInput(f"parent version {meta.parent_number} does not exist", code="unknown_parent")
    last = model.versions.order_by("-number").values_list("number", flat=True).first() or 0
    version = ModelVersion.objects.create(
        model=model, number=last + 1, format=meta.format, blob=blob, artifact_name=artifact_name,
        input_signature=graph["inputs"], output_signature=graph["outputs"],
        graph_info={k: v for k, v in graph.items() if k not in ("inputs", "outputs")}
        | ({"declared_signature": meta.declared_signature} if meta.declared_signature else {}),
        git_commit=meta.git_commit, ci_run_url=meta.ci_run_url, training_data_digest=meta.training_data_digest,
        parent=parent, derivation=meta.derivation, tags=meta.tags or {},
        signature_bundle=bundle, signature_source=source, signer=verified.signer,
        signing_key_id=verified.key_id, created_by=actor if getattr(actor, "pk", None) else None,
    )
    record_audit(actor, "version.registered", model_name=model.name, version_number=version.number,
                 to_state=version.status, digest=digest, size=size, signer=verified.signer,
                 signature_source=source)
    pipeline.version_registered(version)
    return version


def claim_blob(digest: str, size: int) -> None:
    """Mark the blob as about to be referenced; call it before committing the bytes to the store.

    A failed upload never deletes the bytes it committed: another upload of the
    same bytes may have stored them, or found them stored, and not yet written
    the row that references them, and no check of the rows could tell (it runs
    before that row exists). Instead the sweep
    (`registry.tasks.remove_unreferenced_blobs`) removes a blob that nothing
    references and no upload claimed within MLCP_ORPHAN_BLOB_GRACE_S. It deletes
    the row before the bytes, in a transaction that holds the row's lock
    (PostgreSQL) or fails rather than write over a newer claim (SQLite), so a
    claim either comes first and the blob is recent, or waits for the sweep and
    finds no row, and the commit that follows stores the bytes again.
    """
    now = timezone.now()
    if not Blob.objects.filter(digest=digest).update(claimed_at=now):
        Blob.objects.get_or_create(digest=digest, defaults={"size": size, "claimed_at": now})


def _claimed_blob(digest: str) -> Blob:
    blob = Blob.objects.filter(digest=digest).first()
    if blob is None:
        # Only when claiming and registering were further apart than MLCP_ORPHAN_BLOB_GRACE_S.
        raise Conflict(f"the uploaded bytes sha256:{digest} were removed as unreferenced before they were "
                       "registered; upload them again", code="upload_expired", digest=digest)
    return blob


def ingest_bytes(model: RegisteredModel, data: bytes, artifact_name: str, meta: VersionMetadata, *,
                 actor, store: BlobStore | None = None) -> ModelVersion:
    """Register in-memory bytes (derived versions made by workers)."""
    store = store or default_store()
    staged = store.stage()
    staged.write(data)
    return ingest_version(model, staged, artifact_name, meta, actor=actor)


# -------------------------------------------------------------- lifecycle

def transition_version(version: ModelVersion, new_status: str, *, actor, reason: str = "", **evidence) -> ModelVersion:
    """Move a version along TRANSITIONS with compare-and-set, and audit it."""
    old_status = version.status
    if new_status not in TRANSITIONS[old_status]:
        raise IllegalTransition(
            f"{version} cannot go from {old_status} to {new_status}",
            from_state=old_status, to_state=new_status,
        )
    updated = ModelVersion.objects.filter(pk=version.pk, status=old_status).update(
        status=new_status, status_reason=reason
    )
    if updated != 1:
        current = ModelVersion.objects.get(pk=version.pk).status
        raise IllegalTransition(
            f"{version} changed to {current} while moving it to {new_status}; retry",
            code="concurrent_change", from_state=current, to_state=new_status,
        )
    version.status, version.status_reason = new_status, reason
    record_audit(actor, "version.status", model_name=version.model.name, version_number=version.number,
                 from_state=old_status, to_state=new_status, reason=reason, **evidence)
    return version


def transition_gate(result: GateResult, new: str, **fields) -> bool:
    """Move one gate result along GATE_TRANSITIONS, by compare-and-set on the verdict and delivery count read.

    False when another delivery of the same gate moved it first: the caller then leaves it alone (its
    verdict, if it has one, is not recorded), so one result per gate per version stands.
    IllegalTransition for a move the table does not have.
    """
    old = result.verdict
    if new not in GATE_TRANSITIONS[old]:
        raise IllegalTransition(f"gate {result.gate} of version {result.version_id} cannot go from {old} to {new}",
                                from_state=old, to_state=new)
    updated = GateResult.objects.filter(pk=result.pk, verdict=old, attempts=result.attempts).update(
        verdict=new, **fields)
    if updated != 1:
        return False
    result.verdict = new
    for name, value in fields.items():
        setattr(result, name, value)
    return True


def require_control(version: ModelVersion, control: str) -> None:
    """IllegalTransition unless `version`'s status accepts `control` (registry.choices.CONTROLS)."""
    if control in CONTROLS[version.status]:
        return
    accepting = " or ".join(status.replace("_", " ") for status, controls in CONTROLS.items() if control in controls)
    done = {VersionControl.APPROVE: "approved", VersionControl.REJECT: "rejected",
            VersionControl.REGATE: "gated again"}[control]
    raise IllegalTransition(f"{version} is {version.status}; only a version that is {accepting} can be {done}",
                            from_state=version.status, to_state=CONTROL_TARGETS[control], control=control)


def approve_version(version: ModelVersion, *, actor, reason: str) -> ModelVersion:
    """Approve a version awaiting approval; with two-person approval, never by whoever shaped it (403 self_approval)."""
    require_control(version, VersionControl.APPROVE)
    conflicts = approval_conflicts(version, actor)
    if conflicts:
        raise Forbidden(f"{actor_name(actor)} may not approve {version}: they {' and '.join(conflicts)}; "
                        "another approver must approve it (two-person approval)", code="self_approval",
                        conflicts=conflicts)
    return transition_version(version, VersionStatus.APPROVED, actor=actor, reason=reason)


def approval_conflicts(version: ModelVersion, actor) -> list[str]:
    """Why `actor` may not approve `version` under two-person approval (MLCP_TWO_PERSON_APPROVAL); [] if they may.

    Whoever uploaded the version (or the version a gate derived it from), or last changed what its
    gates judge it by (the model's gate policy or default golden set), needs a second person's
    approval: otherwise one person holding `ci` and `approver` ships what they alone decided.
    """
    person = getattr(actor, "pk", None)
    if not settings.MLCP_TWO_PERSON_APPROVAL or person is None:
        return []  # system actors (the demo, tests) are not people
    conflicts = []
    uploaders = set()
    ancestor = version
    while ancestor is not None:  # a derived version (int8, pt2 -> ONNX) was made from its uploader's bytes
        uploaders.add(ancestor.created_by_id)
        ancestor = ancestor.parent
    if person in uploaders:
        conflicts.append("uploaded it")
    model = RegisteredModel.objects.get(pk=version.model_id)
    if model.gate_policy_changed_by_id == person:
        conflicts.append(f"last changed the gate policy of '{model.name}'")
    if model.golden_set_changed_by_id == person:
        conflicts.append(f"last set the default golden set of '{model.name}'")
    return conflicts


def reject_version(version: ModelVersion, *, actor, reason: str) -> ModelVersion:
    if not reason.strip():
        raise InvalidInput("a rejection needs a reason", code="reason_required")
    require_control(version, VersionControl.REJECT)
    return transition_version(version, VersionStatus.REJECTED, actor=actor, reason=reason)


def request_gates(version: ModelVersion, *, actor) -> ModelVersion:
    """Queue the gates again for a version left `registered` (a gate errored, or the broker was down)."""
    require_control(version, VersionControl.REGATE)
    record_audit(actor, "version.gates_requested", model_name=version.model.name, version_number=version.number)
    pipeline.version_registered(version)
    return version


# ----------------------------------------------------------------- aliases

@transaction.atomic
def move_alias(model: RegisteredModel, alias_name: str, version: ModelVersion | None, *, actor,
               reason: str = "") -> Alias | None:
    """Point `alias_name` at `version` (or remove it), atomically, with history."""
    if version is not None and version.model_id != model.pk:
        raise InvalidInput(f"{version} does not belong to model '{model.name}'")
    alias = Alias.objects.select_for_update().filter(model=model, name=alias_name).first()
    previous = alias.version if alias else None
    if previous == version:
        return alias
    if version is None:
        alias.delete()
        alias = None
    elif alias is None:
        alias = Alias.objects.create(model=model, name=alias_name, version=version)
    else:
        alias.version = version
        alias.save(update_fields=["version", "updated_at"])
    AliasMove.objects.create(model=model, alias_name=alias_name, from_version=previous, to_version=version,
                             actor=actor_name(actor), reason=reason)
    record_audit(actor, "alias.moved", model_name=model.name,
                 version_number=version.number if version else None,
                 from_state=str(previous.number) if previous else "",
                 to_state=str(version.number) if version else "", reason=reason, alias=alias_name)
    return alias


def alias_target(model: RegisteredModel, alias_name: str) -> ModelVersion | None:
    alias = Alias.objects.select_related("version__blob", "version__model").filter(model=model, name=alias_name).first()
    return alias.version if alias else None


# ---------------------------------------------------------------- integrity

@dataclass
class VerificationReport:
    ok: bool
    digest: str
    detail: str
    signer: str = ""

    def as_dict(self) -> dict:
        return {"ok": self.ok, "digest": self.digest, "detail": self.detail, "signer": self.signer}


def ensure_intact(version: ModelVersion, *, now=None, store: BlobStore | None = None) -> None:
    """Refuse bytes found altered (IntegrityFailure `artifact_tampered`).

    The blob is re-hashed (and the outcome recorded) unless a check within
    MLCP_VERIFY_TRUST_S vouches for it, so no reader can make the server re-read
    whole artifacts at will; `manage.py verifyblobs` re-hashes on a schedule.
    """
    now = now or timezone.now()
    blob = version.blob
    if not blob.is_tampered and not blob.verified_within(settings.MLCP_VERIFY_TRUST_S, now=now):
        if not blob.verify(store, now=now):
            log.error("%s: stored blob sha256:%s now hashes to sha256:%s; marked tampered",
                      version, blob.digest, blob.tampered_digest)
    if blob.is_tampered:
        raise tampered_error(version)


def tampered_error(version: ModelVersion) -> IntegrityFailure:
    blob = version.blob
    return IntegrityFailure(
        f"{version} (sha256:{blob.digest}) is corrupt in storage: its bytes hashed to "
        f"sha256:{blob.tampered_digest} at {blob.tampered_at:%Y-%m-%d %H:%M:%S} UTC; it is refused until they "
        f"are restored", code="artifact_tampered", digest=blob.digest)


def verify_version(version: ModelVersion, store: BlobStore | None = None, *, now=None) -> VerificationReport:
    """Whether the stored bytes match their digest (see `ensure_intact`) and the signature covers it."""
    try:
        ensure_intact(version, now=now, store=store)
    except IntegrityFailure as exc:
        return VerificationReport(False, version.digest, exc.detail)
    verified = signing.verify_bundle(version.signature_bundle, version.digest)
    return VerificationReport(True, version.digest,
                              f"{version} verifies: its bytes hashed to its digest at "
                              f"{version.blob.verified_at:%Y-%m-%d %H:%M:%S} UTC and the signature covers it",
                              verified.signer)


def read_verified_artifact(version: ModelVersion, store: BlobStore | None = None) -> bytes:
    """The artifact's bytes, in memory, after checking signature and digest on exactly those bytes."""
    store = store or default_store()
    signing.verify_bundle(version.signature_bundle, version.digest)
    try:
        return store.read_verified(version.digest)
    except IntegrityFailure as exc:
        raise IntegrityFailure(f"{version}: {exc.detail}", code="artifact_tampered",
                               version=str(version), digest=version.digest) from None


# -------------------------------------------------------------- golden sets

def register_golden_set(model: RegisteredModel, staged: StagedBlob, *, actor, description: str = "",
                        make_default: bool = True, reason: str = "") -> GoldenSet:
    """Store, sign and describe a labelled .npz set; optionally make it the model's default.

    Who may make it the default is the caller's check (GOVERNED_SETTINGS); the change is audited with
    `reason` and its author recorded for two-person approval.
    """
    from registry.golden_sets import describe_golden_set

    try:
        if make_default and _person(actor) is not None:  # a system actor's setup (the demo) has nobody to ask
            _require_reason(reason, "making a golden set the default")
        digest = staged.digest or staged.finish()
        with staged.open() as fh:
            summary = describe_golden_set(fh)
        bundle = signing.sign_digest(digest, f"{model.name}-golden.npz")
        claim_blob(digest, staged.size)
        staged.commit()
    except BaseException:
        staged.discard()
        raise
    # As for a version, a failure from here on leaves the committed bytes to the sweep (`claim_blob`).
    with transaction.atomic():
        locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        blob = _claimed_blob(digest)
        last = locked.golden_sets.order_by("-number").values_list("number", flat=True).first() or 0
        golden = GoldenSet.objects.create(
            model=locked, number=last + 1, blob=blob, num_examples=summary["num_examples"],
            input_shape=summary["input_shape"], class_names=summary["class_names"],
            description=description, signature_bundle=bundle,
            signer=signing.active_public_key().name,
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        if make_default:
            _make_default(locked, golden, actor)
        record_audit(actor, "golden_set.registered", model_name=model.name, digest=digest, reason=reason,
                     golden_set=golden.number, default=make_default)
        return golden


def _make_default(locked: RegisteredModel, golden: GoldenSet, actor) -> None:
    locked.default_golden_set = golden
    locked.golden_set_changed_by = _person(actor)
    locked.golden_set_changed_at = timezone.now()
    locked.save(update_fields=["default_golden_set", "golden_set_changed_by", "golden_set_changed_at"])


@transaction.atomic
def set_default_golden_set(model: RegisteredModel, number: int, *, actor, reason: str) -> RegisteredModel:
    """Make the model's golden set `number` the one its golden-set gate judges versions by."""
    _require_reason(reason, "changing the default golden set")
    locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
    golden = locked.golden_sets.filter(number=number).first()
    if golden is None:
        raise NotFound(f"model '{model.name}' has no golden set {number}")
    previous = locked.default_golden_set.number if locked.default_golden_set_id else None
    _make_default(locked, golden, actor)
    record_audit(actor, "model.default_golden_set", model_name=model.name, reason=reason,
                 from_state=str(previous or ""), to_state=str(number))
    return locked


# -------------------------------------------------------------- governance

def minimum_gates() -> list[str]:
    """The gates every model's policy keeps (MLCP_MINIMUM_GATES), checked against the gates that exist."""
    from workers.gates.policy import GATE_NAMES

    gates = list(settings.MLCP_MINIMUM_GATES)
    unknown = [gate for gate in gates if gate not in GATE_NAMES]
    if unknown:
        raise ImproperlyConfigured(f"MLCP_MINIMUM_GATES names unknown gates {unknown}; known: {list(GATE_NAMES)}")
    return gates


def check_gate_policy(overrides) -> dict:
    """The policy `overrides` resolve to; refused when malformed (invalid_gate_policy) or below the floor.

    Below the floor (policy_below_floor) means it leaves out a gate the organisation requires of every
    model: `{"gates": []}` would leave versions gating for ever, `["validation"]` would skip the golden set.
    """
    # Imported here: the gates package loads onnxruntime, which only writes of a policy need.
    from workers.gates.policy import resolve_gate_policy

    policy = resolve_gate_policy(overrides)
    required = minimum_gates()
    missing = [gate for gate in required if gate not in policy["gates"]]
    if missing:
        raise InvalidInput(f"the policy's gates {policy['gates']} leave out {', '.join(missing)}; every model runs "
                           f"at least {', '.join(required)} (MLCP_MINIMUM_GATES)", code="policy_below_floor",
                           missing=missing, minimum=required)
    return policy


@transaction.atomic
def set_gate_policy(model: RegisteredModel, overrides: dict, *, actor, reason: str) -> RegisteredModel:
    """Replace the model's gate policy overrides, at or above the floor, with the reason audited."""
    _require_reason(reason, "changing a gate policy")
    check_gate_policy(overrides)
    locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
    previous = locked.gate_policy
    locked.gate_policy = overrides
    locked.gate_policy_changed_by = _person(actor)
    locked.gate_policy_changed_at = timezone.now()
    locked.save(update_fields=["gate_policy", "gate_policy_changed_by", "gate_policy_changed_at"])
    record_audit(actor, "model.gate_policy", model_name=model.name, reason=reason, previous=previous,
                 policy=overrides)
    return locked


def _require_reason(reason: str, what: str) -> None:
    if not (reason or "").strip():
        raise InvalidInput(f"{what} needs a reason; it is kept in the audit trail", code="reason_required")


def _person(actor):
    """The user row behind `actor`, or None for a system actor ("demo", "gate-pipeline")."""
    return actor if getattr(actor, "pk", None) else None


def parse_json_field(raw, field: str, expect=dict):
    if raw in (None, ""):
        return None
    if isinstance(raw, expect):
        return raw
    try:
        value = untrusted_json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"'{field}' is not valid JSON: {exc}", code="malformed_metadata") from None
    if not isinstance(value, expect):
        raise InvalidInput(f"'{field}' must be a JSON {expect.__name__}", code="malformed_metadata")
    return value
