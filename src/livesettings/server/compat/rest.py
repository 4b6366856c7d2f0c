"""``/rest/v1/user_preferences``: the PostgREST subset the seed's supabase-js code uses.

The table is the settings documents, one row per user in the seed's shape (:mod:`.rows`).

- ``GET`` (and ``HEAD``): ``select=*`` or a column list (``alias:column`` too), ``eq.``
  filters on ``user_id``, ``id``, ``theme`` and ``language``, ``limit``/``offset``/``order``.
  An array, or with ``Accept: application/vnd.pgrst.object+json`` the one row (406
  ``PGRST116`` for 0 or 2+ rows).
- ``PATCH``: 204, or 200 with ``Prefer: return=representation``.
- ``POST``: 201; ``Prefer: resolution=merge-duplicates`` (with ``on_conflict=user_id``) upserts,
  ``resolution=ignore-duplicates`` skips existing rows, and a plain insert of an existing row
  is 409 ``23505``.

A write never replaces the stored row: it becomes a merge patch, sent with the revision just
read as its base through the server's one write path (``mutations.py``), so it is merged,
versioned and pushed to every device like a ``PATCH /v1/settings``. Column semantics are
PostgREST's: a value sent for ``preferences``, ``ai_providers`` or ``api_keys`` *replaces* the
column, so keys absent from it are deleted. In ``api_keys`` a plaintext string is sealed as
in PATCH, a masked value echoed back unchanged keeps the stored secret, and ``null`` deletes.
``id``, ``created_at`` and ``updated_at`` are the server's: values sent for them are ignored.

Access is row-level security's: a user's token reaches its own row only (a filter naming
another user matches nothing), a service token any row (named by ``user_id=eq.``), and the
anon key none (reads are empty, inserts 401).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from ...document import diff
from ...errors import LiveSettingsError, TokenExpired, Unauthorized
from ...store.base import StoredDocument
from ..dependencies import bearer_token, client_address, read_json
from ..mutations import Edit, check_write_rate, commit, patch_mutation
from ..services import Services
from .answers import PostgrestError, json_answer, postgrest_response, retry_after_of
from .keys import anon_claims, apikey_of, check_apikey, is_anon
from .rows import COLUMN_NAMES, row_ids_of, seed_row

__all__ = ["TABLE", "Caller", "router"]

TABLE: Final = "user_preferences"
OBJECT_MEDIA: Final = "application/vnd.pgrst.object+json"
_FILTERABLE: Final = ("user_id", "id", "theme", "language")
_SERVER_COLUMNS: Final = frozenset({"id", "created_at", "updated_at"})
_OBJECT_COLUMNS: Final = ("preferences", "ai_providers")
_RESERVED: Final = frozenset({"select", "limit", "offset", "order", "on_conflict", "columns"})
_CLIENT_ID: Final = "rest"

router = APIRouter(prefix="/rest/v1", include_in_schema=False)


@dataclass(frozen=True)
class Caller:
    """Who a request acts as: a user (``user_id``), a service (any row) or anon (no row)."""

    user_id: str | None = None
    service: bool = False

    @property
    def anon(self) -> bool:
        """True for the anon key: row-level security shows it no row."""
        return self.user_id is None and not self.service


@dataclass
class _Query:
    """The parsed query string and headers of one request."""

    columns: list[tuple[str, str]]  # (shown as, column)
    filters: list[tuple[str, str]]  # (column, value) of eq filters
    limit: int | None = None
    offset: int = 0
    single: bool = False
    strip_nulls: bool = False
    prefer: set[str] = field(default_factory=set)

    def wants(self, preference: str) -> bool:
        return preference in self.prefer


# --- the request's caller, query and answer ----------------------------------------------


def _jwt_error(exc: LiveSettingsError) -> PostgrestError:
    if isinstance(exc, TokenExpired):
        return PostgrestError(401, "PGRST303", "JWT expired")
    return PostgrestError(401, "PGRST301", exc.message)


async def _caller(request: Request, services: Services) -> Caller:
    """The ``apikey`` checked, then the bearer token (else the apikey) as the caller."""
    apikey = apikey_of(request)
    if not apikey:
        raise PostgrestError(
            401,
            "PGRST302",
            "No API key found in request",
            hint="Send the anon key (livesettings token issue --anon) as the apikey header.",
        )
    try:
        key = await check_apikey(services, apikey, address=request)
        token = bearer_token(request.headers.get("authorization")) or apikey
        if token == apikey:
            claims = key.claims
        elif is_anon(token):
            await anon_claims(services, token)
            claims = None
        else:
            address = functools.partial(client_address, request, services)
            claims = await services.authenticate(token, address=address, via="http")
    except (Unauthorized, TokenExpired) as exc:
        raise _jwt_error(exc) from exc
    if claims is None:
        return Caller()
    if claims.is_service:
        return Caller(service=True)
    return Caller(user_id=claims.sub)


def _names(text: str) -> list[str]:
    return [part.strip().strip('"') for part in text.split(",") if part.strip()]


def _select(text: str | None) -> list[tuple[str, str]]:
    if text is None or text.strip() in ("", "*"):
        return [(name, name) for name in COLUMN_NAMES]
    chosen: list[tuple[str, str]] = []
    for item in _names(text):
        if item == "*":
            chosen += [(name, name) for name in COLUMN_NAMES]
            continue
        alias, colon, name = item.partition(":")
        if not colon:
            alias = name = item
        if any(c in name for c in "()->:!") or not alias:
            raise PostgrestError(
                400,
                "PGRST100",
                f'"failed to parse select parameter ({text[:200]})"',
                hint="livesettings selects plain columns (or alias:column) of user_preferences",
            )
        if name not in COLUMN_NAMES:
            raise _no_column(name)
        chosen.append((alias, name))
    return chosen


def _no_column(name: str) -> PostgrestError:
    return PostgrestError(400, "42703", f"column {TABLE}.{name[:100]} does not exist")


def _query(request: Request) -> _Query:
    params = request.query_params
    filters: list[tuple[str, str]] = []
    for key in ("or", "and", "not"):
        if key in params:
            raise PostgrestError(
                400,
                "PGRST100",
                f'"failed to parse logic tree ({params[key][:200]})"',
                hint=f"livesettings does not support the {key} filter",
            )
    for key, value in params.multi_items():
        if key in _RESERVED or key == "apikey":
            continue
        if key not in COLUMN_NAMES:
            raise _no_column(key)
        op, dot, operand = value.partition(".")
        if key not in _FILTERABLE or op != "eq" or not dot:
            raise PostgrestError(
                400,
                "PGRST100",
                f'"failed to parse filter ({value[:200]})"',
                details=f"{key}={value[:200]}",
                hint="livesettings filters user_preferences with eq on user_id, id, theme and "
                "language only",
            )
        filters.append((key, operand))
    accept = request.headers.get("accept", "")
    media = accept.split(",")[0].strip().lower()
    single = media.startswith(OBJECT_MEDIA)
    if (
        media
        and not single
        and not media.startswith(
            ("application/json", "application/vnd.pgrst.array+json", "*/*", "application/*")
        )
    ):
        raise PostgrestError(
            406, "PGRST107", f"None of these media types are available: {accept[:100]}"
        )
    prefer: set[str] = set()
    for header in request.headers.getlist("prefer"):
        prefer |= {p.strip() for p in header.split(",") if p.strip()}
    query = _Query(
        columns=_select(params.get("select")),
        filters=filters,
        single=single,
        strip_nulls="nulls=stripped" in media.replace(" ", ""),
        prefer=prefer,
    )
    for name in ("limit", "offset"):
        text = params.get(name)
        if text is not None:
            if not text.isdigit() or len(text) > 12:
                raise PostgrestError(400, "PGRST100", f'"failed to parse {name} ({text[:40]})"')
            setattr(query, name, int(text))
    _check_schema(request)
    return query


def _check_schema(request: Request) -> None:
    for header in ("accept-profile", "content-profile"):
        schema = request.headers.get(header)
        if schema is not None and schema != "public":
            raise PostgrestError(
                406,
                "PGRST106",
                f"Invalid schema: {schema[:63]}",
                hint="Only the following schemas are exposed: public",
            )


def _shown(row: dict[str, Any], query: _Query) -> dict[str, Any]:
    shown = {alias: row[name] for alias, name in query.columns}
    if query.strip_nulls:
        shown = {k: v for k, v in shown.items() if v is not None}
    return shown


def _answer(
    rows: list[dict[str, Any]],
    query: _Query,
    status: int,
    *,
    body: bool = True,
) -> Response:
    """Rows as PostgREST answers them: an array, or the one object, or 406 PGRST116."""
    if query.single and len(rows) != 1:
        raise PostgrestError(
            406,
            "PGRST116",
            "Cannot coerce the result to a single JSON object",
            details=f"The result contains {len(rows)} rows",
        )
    shown = [_shown(row, query) for row in rows]
    span = f"0-{len(rows) - 1}" if rows else "*"
    total = str(len(rows)) if any(p.startswith("count=") for p in query.prefer) else "*"
    headers = {"Content-Range": f"{span}/{total}", "Cache-Control": "no-store"}
    if query.single:
        headers["Content-Type"] = f"{OBJECT_MEDIA}; charset=utf-8"
    if not body:
        return Response(status_code=status, headers=headers)
    answer = json_answer(shown[0] if query.single else shown, status, headers)
    if query.single:
        answer.headers["content-type"] = f"{OBJECT_MEDIA}; charset=utf-8"
    return answer


# --- rows ------------------------------------------------------------------------------


def _exists(doc: StoredDocument) -> bool:
    """Whether the user has a row (a document that was never written has none)."""
    return doc.revision > 0 or doc.created_at is not None


async def _row(services: Services, doc: StoredDocument) -> dict[str, Any]:
    row_id = await row_ids_of(services.store).get(doc.user_id)
    return seed_row(
        doc.user_id, row_id, services.view(doc.settings), doc.created_at, doc.updated_at
    )


def _target(caller: Caller, query: _Query) -> str | None:
    """The user whose row the request may reach, or None when it reaches none."""
    named = {value for column, value in query.filters if column == "user_id"}
    if len(named) > 1:
        return None  # user_id=eq.a&user_id=eq.b matches nothing
    if caller.service:
        if not named:
            raise PostgrestError(
                400,
                "PGRST100",
                "a service token must name the row: add the filter user_id=eq.<user id>",
                hint="livesettings reads and writes one user's row at a time",
            )
        return next(iter(named))
    if caller.user_id is None:
        return None
    if named and named != {caller.user_id}:
        return None  # row-level security: another user's row is not visible
    return caller.user_id


async def _matching(
    services: Services, caller: Caller, query: _Query
) -> tuple[str | None, StoredDocument | None, dict[str, Any] | None]:
    """The reachable row that passes every filter: its user, document and shown row."""
    user_id = _target(caller, query)
    if user_id is None or len(user_id) > 128 or not user_id:
        return None, None, None
    doc = await services.store.get_document(user_id)
    if not _exists(doc):
        return user_id, doc, None
    row = await _row(services, doc)
    for column, value in query.filters:
        if column != "user_id" and str(row[column]) != value:
            return user_id, doc, None
    return user_id, doc, row


def _paged(rows: list[dict[str, Any]], query: _Query) -> list[dict[str, Any]]:
    end = None if query.limit is None else query.offset + query.limit
    return rows[query.offset : end]


# --- writes ------------------------------------------------------------------------------


def _unknown_column(name: str) -> PostgrestError:
    return PostgrestError(
        400,
        "PGRST204",
        f"Could not find the '{name[:100]}' column of '{TABLE}' in the schema cache",
    )


def _api_keys_patch(current: Any, sent: Any) -> Any:
    """The merge patch turning the stored secrets into ``sent`` (a column replacement)."""
    if not isinstance(sent, dict):
        return sent  # null resets; anything else is refused by the patch's validation
    stored = current if isinstance(current, dict) else {}
    patch: dict[str, Any] = {name: None for name in stored if name not in sent}
    for name, value in sent.items():
        if isinstance(value, dict) and value.get("set") is True:
            if name not in stored:
                raise PostgrestError(
                    400,
                    "22023",
                    f"api_keys.{name[:100]}: a masked value cannot create a secret",
                    hint="send the key itself as a string; a masked value keeps a stored key",
                )
            continue  # echoed back unchanged: keep the stored secret
        if value is None and name not in stored:
            continue
        patch[name] = value
    return patch


def _row_patch(settings: dict[str, Any], values: dict[str, Any], user_id: str) -> dict[str, Any]:
    """The merge patch that gives the row ``values`` (PostgREST's column replacement)."""
    patch: dict[str, Any] = {}
    for name, value in values.items():
        if name not in COLUMN_NAMES:
            raise _unknown_column(name)
        if name in _SERVER_COLUMNS:
            continue
        if name == "user_id":
            if value != user_id:
                raise PostgrestError(
                    403,
                    "42501",
                    f'new row violates row-level security policy for table "{TABLE}"',
                    hint="a row's user_id cannot change",
                )
            continue
        current = settings.get(name)
        if name == "api_keys":
            keys = _api_keys_patch(current, value)
            if keys != {}:
                patch[name] = keys
        elif name in _OBJECT_COLUMNS and isinstance(value, dict):
            changed = diff(current if isinstance(current, dict) else {}, value)
            if changed or not isinstance(current, dict):
                patch[name] = changed
        elif value is None or value != current:
            patch[name] = value
    return patch


def _write_error(exc: LiveSettingsError) -> PostgrestError:
    """A refused write in PostgREST's words (the message stays livesettings')."""
    details = exc.details if isinstance(exc.details, str) else None
    if isinstance(exc.details, dict) and isinstance(exc.details.get("path"), str):
        details = f"at {exc.details['path'] or '/'}"
    wait = retry_after_of(exc)
    if exc.code == "malformed_json":
        return PostgrestError(400, "PGRST102", exc.message)
    if exc.status == 422:
        return PostgrestError(400, "22023", exc.message, details=details)
    if exc.status == 413:
        return PostgrestError(413, "54000", exc.message, details=details)
    if exc.status == 429:
        return PostgrestError(429, "53400", exc.message, retry_after=wait)
    if exc.status in (401, 403):
        return PostgrestError(exc.status, "42501", exc.message)
    if exc.status >= 500:
        return PostgrestError(503, "PGRST000", exc.message, retry_after=wait)
    # Anything else keeps livesettings' own code, which says what happened.
    return PostgrestError(exc.status, exc.code, exc.message, details=details)


async def _write(
    services: Services,
    request: Request,
    doc: StoredDocument,
    values: dict[str, Any],
    *,
    create: bool,
) -> StoredDocument:
    """Write ``values`` to ``doc``'s row as one mutation based on ``doc.revision``."""
    user_id = doc.user_id
    patch = _row_patch(doc.settings, values, user_id)
    if not patch and not create:
        return doc
    if not patch:  # an insert of nothing but defaults still makes the row
        patch = {"theme": doc.settings.get("theme") or "light"}
    check_write_rate(services, user_id)
    client_id = request.headers.get("x-client-id") or _CLIENT_ID
    edit = Edit(
        "rest-" + uuid.uuid4().hex,
        client_id[:128],
        base_revision=doc.revision,
    )
    await commit(services, patch_mutation(services, user_id, patch, edit))
    return await services.store.get_document(user_id)


def _representation(query: _Query) -> bool:
    return query.wants("return=representation")


# --- routes ------------------------------------------------------------------------------

_Handler = Callable[[Request, Services, Caller, _Query], Awaitable[Response]]


def _postgrest(handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
    """Check the caller and the query, run ``handler``, answer errors as PostgREST."""

    async def endpoint(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            caller = await _caller(request, services)
            return await handler(request, services, caller, _query(request))
        except PostgrestError as exc:
            return postgrest_response(exc)
        except LiveSettingsError as exc:
            services.metrics.errors.inc(code=exc.code)
            return postgrest_response(_write_error(exc))

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


async def _get(request: Request, services: Services, caller: Caller, query: _Query) -> Response:
    """Read the reachable rows."""
    _, _, row = await _matching(services, caller, query)
    rows = _paged([row] if row is not None else [], query)
    return _answer(rows, query, 200, body=request.method != "HEAD")


async def _body(request: Request, services: Services) -> Any:
    return await read_json(request, services.config.max_patch_bytes)


async def _patch(request: Request, services: Services, caller: Caller, query: _Query) -> Response:
    """Update the reachable row with the columns sent."""
    values = await _body(request, services)
    if not isinstance(values, dict):
        raise PostgrestError(400, "PGRST102", "the body of a PATCH must be one JSON object")
    _, doc, row = await _matching(services, caller, query)
    rows: list[dict[str, Any]] = []
    if doc is not None and row is not None:
        doc = await _write(services, request, doc, values, create=False)
        rows.append(await _row(services, doc))
    if _representation(query):
        return _answer(rows, query, 200)
    if query.single and len(rows) != 1:
        return _answer(rows, query, 204)
    return Response(status_code=204, headers={"Content-Range": "0-0/*" if rows else "*/*"})


async def _post(request: Request, services: Services, caller: Caller, query: _Query) -> Response:
    """Insert rows, or upsert them with ``Prefer: resolution=merge-duplicates``."""
    body = await _body(request, services)
    items = body if isinstance(body, list) else [body]
    if not items or not all(isinstance(item, dict) for item in items):
        raise PostgrestError(400, "PGRST102", "the body must be a JSON object or an array of them")
    conflict = request.query_params.get("on_conflict")
    if conflict is not None and _names(conflict) not in (["user_id"], ["id"]):
        raise PostgrestError(
            400,
            "42P10",
            "there is no unique or exclusion constraint matching the ON CONFLICT specification",
            hint="user_preferences is unique on user_id (use on_conflict=user_id)",
        )
    wanted = request.query_params.get("columns")
    if wanted is not None:
        keep = set(_names(wanted))
        for name in keep - set(COLUMN_NAMES):
            raise _unknown_column(name)
        items = [{k: v for k, v in item.items() if k in keep} for item in items]
    merge = query.wants("resolution=merge-duplicates")
    ignore = query.wants("resolution=ignore-duplicates")
    targets = [_insert_target(caller, item) for item in items]
    if len(set(targets)) != len(targets):
        raise PostgrestError(
            400,
            "21000",
            "ON CONFLICT DO UPDATE command cannot affect row a second time",
            hint="each row of one insert must name a different user_id",
        )
    rows: list[dict[str, Any]] = []
    for user_id, item in zip(targets, items, strict=True):
        doc = await services.store.get_document(user_id)
        exists = _exists(doc)
        if exists and ignore:
            continue
        if exists and not merge:
            raise PostgrestError(
                409,
                "23505",
                f'duplicate key value violates unique constraint "{TABLE}_user_id_key"',
                details=f"Key (user_id)=({user_id}) already exists.",
            )
        doc = await _write(services, request, doc, item, create=not exists)
        rows.append(await _row(services, doc))
    if _representation(query):
        return _answer(rows, query, 201)
    if query.single and len(rows) != 1:
        return _answer(rows, query, 201)
    return Response(status_code=201, headers={"Content-Range": "*/*"})


def _insert_target(caller: Caller, item: dict[str, Any]) -> str:
    """The user an inserted row belongs to; row-level security checks who may write it."""
    named = item.get("user_id")
    if caller.anon:
        raise PostgrestError(
            401, "42501", f'new row violates row-level security policy for table "{TABLE}"'
        )
    if named is None:
        if caller.user_id is None:
            raise PostgrestError(
                400,
                "23502",
                f'null value in column "user_id" of relation "{TABLE}" violates not-null '
                "constraint",
            )
        return caller.user_id
    if not isinstance(named, str) or not 0 < len(named) <= 128:
        raise PostgrestError(400, "22P02", "user_id must be a text of 1 to 128 characters")
    if not caller.service and named != caller.user_id:
        raise PostgrestError(
            403, "42501", f'new row violates row-level security policy for table "{TABLE}"'
        )
    return named


async def _delete(request: Request, services: Services, caller: Caller, query: _Query) -> Response:
    """Rows are not deleted over /rest/v1 (deleting an account deletes its settings)."""
    raise PostgrestError(
        405,
        "PGRST105",
        "livesettings does not delete user_preferences rows",
        hint="set the columns to null to reset them; DELETE /v1/account removes an account",
    )


async def _other_table(
    request: Request, services: Services, caller: Caller, query: _Query
) -> Response:
    """Every other table, view or function: not here."""
    name = request.path_params.get("rest", "")
    if name.startswith("rpc/"):
        raise PostgrestError(
            404,
            "PGRST202",
            f"Could not find the function public.{name[4:][:100]} without parameters in the "
            "schema cache",
            hint="livesettings serves the user_preferences table only",
        )
    raise PostgrestError(
        404,
        "PGRST205",
        f"Could not find the table 'public.{name[:100]}' in the schema cache",
        hint="livesettings serves the user_preferences table only",
    )


async def _other_route(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        caller = await _caller(request, services)
        return await _other_table(request, services, caller, _Query(columns=[], filters=[]))
    except PostgrestError as exc:
        return postgrest_response(exc)


router.add_api_route(f"/{TABLE}", _postgrest(_get), methods=["GET", "HEAD"])
router.add_api_route(f"/{TABLE}", _postgrest(_patch), methods=["PATCH"])
router.add_api_route(f"/{TABLE}", _postgrest(_post), methods=["POST"])
router.add_api_route(f"/{TABLE}", _postgrest(_delete), methods=["DELETE", "PUT"])
router.add_api_route(
    "/{rest:path}", _other_route, methods=["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]
)
