"""What one pending mutation does to a stored document — decided without I/O.

Backends load the document, the remembered mutation id, the user's data key (when the patch
holds secrets) and, for a revert, the inverse patches; :func:`plan_mutation` returns what to
write. Keeping this here means SQLite and PostgreSQL cannot drift apart in semantics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..document import (
    DEFAULT_LIMITS,
    FIELDS,
    Limits,
    PreferencesSchema,
    json_size,
    mask_document,
    rfc3339,
    validate_document,
)
from ..errors import (
    IdempotencyKeyReused,
    LiveSettingsError,
    PreconditionFailed,
    RevisionGone,
    ValidationError,
)
from ..merge import DocState, Mutation, merge, settings_diff, state_at
from ..records import compact_tombstones
from ..replacement import replacement_patch
from .base import AppliedMutation, ChangeRow, CommitOutcome, PendingMutation, StoredDocument
from .idempotency import BodyHasher, body_hash

__all__ = [
    "Plan",
    "Sealer",
    "body_hash",
    "has_secrets",
    "plan_mutation",
    "rfc3339_ms",
]

Sealer = Callable[[str, str], dict[str, Any]]
"""``seal(name, plaintext) -> envelope`` for one user's data key."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What a backend writes for one mutation (``document``/``change``/``remember`` may be None)."""

    outcome: CommitOutcome
    document: StoredDocument | None = None
    change: ChangeRow | None = None
    remember: AppliedMutation | None = None


def has_secrets(pending: PendingMutation) -> bool:
    keys = pending.mutation.patch.get("api_keys")
    return isinstance(keys, dict) and any(isinstance(v, str) for v in keys.values())


def rfc3339_ms(ms: int) -> str:
    return rfc3339(ms)


def plan_mutation(
    pending: PendingMutation,
    doc: StoredDocument,
    prior: AppliedMutation | None,
    *,
    now_ms: int,
    seal: Sealer | None = None,
    limits: Limits | None = None,
    schema: PreferencesSchema | None = None,
    inverses: Sequence[Mapping[str, Any]] = (),
    oldest_revertable: int = 0,
    changelog_retain: int | None = None,
    hasher: BodyHasher | None = None,
    validated: bool = False,
) -> Plan:
    """Decide one mutation. Refusals come back as ``outcome.error`` (nothing to write).

    Tombstones older than the last ``changelog_retain`` revisions, and the oldest beyond the
    limits' tombstone budget, are dropped from the stored records (:mod:`livesettings.records`).
    The remembered body hash is keyed by ``hasher`` (:mod:`.idempotency`). ``validated`` says
    that ``doc.settings`` came out of an earlier plan with the same ``limits`` and ``schema``:
    then only the fields the merge changed are walked again (:func:`validated_settings`).
    """
    hasher = hasher or BodyHasher(None)
    mutation = pending.mutation
    if prior is not None:
        if not hasher.matches(prior.body_hash, pending.body_hash):
            return _refused(
                pending,
                doc,
                IdempotencyKeyReused(
                    f"mutation id {mutation.mutation_id!r} was already used for another change",
                    path="",
                ),
            )
        return Plan(
            CommitOutcome(
                pending.user_id,
                mutation.mutation_id,
                prior.revision,
                conflict_payloads=prior.conflicts,
                repeated=True,
            )
        )
    try:
        patch = _patch_for(pending, doc, inverses, oldest_revertable)
    except LiveSettingsError as exc:
        return _refused(pending, doc, exc)
    if pending.expected_revision is not None and pending.expected_revision != doc.revision:
        return _refused(
            pending,
            doc,
            PreconditionFailed(
                f"the settings are at revision {doc.revision}, not {pending.expected_revision}",
                details={"revision": doc.revision, "settings": mask_document(doc.settings)},
            ),
        )
    if isinstance(patch.get("api_keys"), dict):
        patch = _sealed(patch, seal)
    state = DocState(doc.revision, doc.settings, doc.records)
    result = merge(state, Mutation(**{**_mutation_fields(mutation), "patch": patch}), now_ms=now_ms)
    payloads = tuple(c.to_json() for c in result.conflicts)
    remember = AppliedMutation(
        mutation.mutation_id, hasher.seal(pending.body_hash), result.revision, payloads
    )
    if not result.applied:
        outcome = CommitOutcome(
            pending.user_id,
            mutation.mutation_id,
            result.revision,
            result.conflicts,
            payloads,
            settings=doc.settings,
        )
        return Plan(outcome, remember=remember)
    try:
        settings = validated_settings(
            result.state.settings,
            limits or DEFAULT_LIMITS,
            schema,
            trusted=doc.settings if validated else None,
        )
    except ValidationError as exc:
        return _refused(pending, doc, exc)
    except LiveSettingsError as exc:
        return _refused(pending, doc, exc)
    updated_at = rfc3339_ms(now_ms)
    records = compact_tombstones(
        result.state.records,
        older_than=result.revision - changelog_retain if changelog_retain else 0,
        budget=(limits or DEFAULT_LIMITS).max_tombstone_bytes,
    )
    new_doc = StoredDocument(
        pending.user_id,
        result.revision,
        settings,
        records,
        updated_at=updated_at,
        created_at=doc.created_at or updated_at,
    )
    change = ChangeRow(
        pending.user_id,
        result.revision,
        result.effective_patch,
        mutation.mutation_id,
        mutation.client_id,
        now_ms,
        payloads,
        result.inverse_patch,
    )
    outcome = CommitOutcome(
        pending.user_id,
        mutation.mutation_id,
        result.revision,
        result.conflicts,
        payloads,
        change=change,
        settings=settings,
    )
    return Plan(outcome, new_doc, change, remember)


_ABSENT: Any = object()


def validated_settings(
    settings: Mapping[str, Any],
    limits: Limits,
    schema: PreferencesSchema | None,
    *,
    trusted: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``validate_document(settings, limits, schema)``, walking only the fields that are not
    the very objects of ``trusted`` — settings that ``validate_document`` returned under the
    same limits and schema. Such a field is its own validation (the check is per field and
    its output passes it unchanged); the document's size is still checked as a whole.
    """
    if trusted is None:
        return validate_document(dict(settings), limits, schema)
    fresh = {
        name: value for name, value in settings.items() if trusted.get(name, _ABSENT) is not value
    }
    fresh.update({name: None for name in FIELDS if name not in settings})  # None: the default
    if not fresh:
        return {name: settings[name] for name in FIELDS}
    # The order of validate_document's checks: the fields, the size, then the schema.
    checked = validate_document(fresh, limits, None, check_size=False)
    out = {name: checked[name] if name in fresh else settings[name] for name in FIELDS}
    if json_size(out) > limits.max_document_bytes:
        return validate_document(dict(settings), limits, schema)  # raises the size error
    if schema is not None and "preferences" in fresh:
        schema.validate(schema.fill_defaults(out["preferences"]))
    return out


def _mutation_fields(mutation: Mutation) -> dict[str, Any]:
    return {
        "mutation_id": mutation.mutation_id,
        "client_id": mutation.client_id,
        "base_revision": mutation.base_revision,
        "edited_at": mutation.edited_at,
    }


def _refused(pending: PendingMutation, doc: StoredDocument, error: LiveSettingsError) -> Plan:
    return Plan(
        CommitOutcome(pending.user_id, pending.mutation.mutation_id, doc.revision, error=error)
    )


def _patch_for(
    pending: PendingMutation,
    doc: StoredDocument,
    inverses: Sequence[Mapping[str, Any]],
    oldest_revertable: int,
) -> dict[str, Any]:
    """The merge patch a pending mutation stands for (a PUT and a revert become diffs)."""
    if pending.kind == "patch":
        return pending.mutation.patch
    if pending.kind == "put":
        return replacement_patch(pending.mutation.patch, doc.settings)
    target_rev = pending.revert_to
    if target_rev is None or target_rev < 0 or target_rev > doc.revision:
        raise ValidationError(
            f"cannot revert to revision {target_rev}: the settings are at revision {doc.revision}",
            path="/revision",
            code="invalid_revision",
        )
    if target_rev < oldest_revertable or len(inverses) != doc.revision - target_rev:
        raise RevisionGone(
            f"revision {target_rev} is older than the retained history "
            f"(oldest revertable: {oldest_revertable})",
            details={"oldest": oldest_revertable},
        )
    target = state_at(doc.settings, [dict(inv) for inv in inverses])
    current = {k: v for k, v in doc.settings.items() if k != "api_keys"}
    return settings_diff(current, target)


def _sealed(patch: dict[str, Any], seal: Sealer | None) -> dict[str, Any]:
    keys = patch["api_keys"]
    if not any(isinstance(v, str) for v in keys.values()):
        return patch
    if seal is None:
        raise RuntimeError("a patch with secrets reached the store without a sealer")
    sealed = {name: seal(name, v) if isinstance(v, str) else v for name, v in keys.items()}
    return {**patch, "api_keys": sealed}
