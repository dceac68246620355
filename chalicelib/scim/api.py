"""The ``scim`` Lambda function: API Gateway REST proxy events for ``/scim/v2/{proxy+}``.

Authentication is the tenant's SCIM token (``Authorization: Bearer scim_...``;
one GetItem on its SHA-256, chalicelib/services/scim_tokens.py); the tenant
comes only from that token, and every read and write below is keyed by it.
Errors are exactly RFC 7644 §3.12 bodies (``schemas``, ``status`` as a
string, ``scimType`` when there is one, ``detail``): strict clients refuse
any other member.  A method a SCIM endpoint does not offer answers ``405``
with an ``Allow`` header.  Every write is audited with actor ``scim``.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator, Union

from pydantic import ValidationError
from pynamodb.exceptions import UpdateError
from scim2_models import (Context, Error, Group, InvalidSyntaxException, InvalidValueException, ListResponse,
                          NotFoundException, PatchOp, ResourceType, ResponseParameters, Schema, SCIMException,
                          SearchRequest, UnauthorizedException, UniquenessException)

from .. import email_claims, logs, metrics, runtime, search_index
from ..identity import token_from_authorization
from ..models import DirectoryGroup, EmailClaim, Tenant, User, condition_failed, mark_expert_pool, user_key, user_name_key
from ..protocol.errors import ChatError, Conflict
from ..services import directory, scim_tokens
from ..services.audit import audit
from ..services.context import Call
from . import filters
from .resources import (DEFAULT_COUNT, MAX_RESULTS, UserResource, group_fields, group_resource, provider,
                        user_fields, user_resource)

log = logging.getLogger("chat.scim")

PREFIX = "/scim/v2"
CONTENT_TYPE = "application/scim+json"
MAX_BODY_BYTES = 512 * 1024
_RETRIES = 3


@dataclass
class Request:
    method: str
    segments: list[str]
    query: dict[str, str]
    body: str | None
    base_url: str
    call: Call

    @property
    def tenant_id(self) -> str:
        return self.call.principal.tenant_id


class _Reply(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


@lru_cache(maxsize=1)
def _provider() -> Any:
    return provider()


# --- entry point ------------------------------------------------------------------

@metrics.flushed("scim")
def handle(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    ctx = event.get("requestContext") or {}
    request_id = str(ctx.get("requestId") or getattr(context, "aws_request_id", "") or uuid.uuid4())[:64]
    token_ctx = logs.bind(requestId=request_id, api="scim", route=f"{event.get('httpMethod')} scim")
    try:
        headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
        tenant_id = scim_tokens.tenant_of(token_from_authorization(headers))
        if tenant_id is None:
            raise UnauthorizedException(detail="Missing, unknown or revoked SCIM token.")
        logs.bind(requestId=request_id, api="scim", tenantId=tenant_id)
        req = Request(method=str(event.get("httpMethod") or "GET").upper(),
                      segments=_segments(event.get("path") or ""), query=dict(event.get("queryStringParameters") or {}),
                      body=_body(event), base_url=_base_url(event, headers),
                      call=directory.scim_call(runtime.env(), tenant_id, (ctx.get("identity") or {}).get("sourceIp"),
                                               request_id))
        with _provider():  # its ScimPolicy applies to every parse, patch and dump below
            status, body, extra = _route(req)
        return _response(status, body, extra)
    except _Reply as reply:
        return _response(reply.status, reply.body, reply.headers)
    except SCIMException as exc:
        return _error(exc.status, exc.scim_type or None, exc.detail)
    except ValidationError as exc:
        err = Error.from_validation_errors(exc)[0]
        return _error(int(err.status or 400), err.scim_type, err.detail or "Invalid request.")
    except ChatError as err:
        return _error(err.status, None, err.message)
    except Exception:  # noqa: BLE001 - never leak a traceback
        log.exception("scim request failed")
        return _error(500, None, "Unexpected server error; the request may be retried.")
    finally:
        logs.unbind(token_ctx)


def _segments(path: str) -> list[str]:
    rest = path.split("?", 1)[0]
    i = rest.find(PREFIX)
    rest = rest[i + len(PREFIX):] if i >= 0 else rest
    return [s for s in rest.split("/") if s]


def _body(event: dict[str, Any]) -> str | None:
    raw = event.get("body")
    if raw is None or raw == "":
        return None
    if event.get("isBase64Encoded"):
        import base64

        raw = base64.b64decode(raw).decode("utf-8", "replace")
    if len(raw.encode("utf-8")) > MAX_BODY_BYTES:
        raise _Reply(413, _error_body(413, None, f"Request body exceeds {MAX_BODY_BYTES} bytes."))
    return raw


def _base_url(event: dict[str, Any], headers: dict[str, str]) -> str:
    """``https://host[/stage]/scim/v2``: API Gateway's requestContext.path carries the stage prefix."""
    host = headers.get("host") or (event.get("requestContext") or {}).get("domainName") or "localhost"
    proto = headers.get("x-forwarded-proto") or "https"
    path, full = event.get("path") or "", (event.get("requestContext") or {}).get("path") or ""
    stage = full[: -len(path)] if path and full.endswith(path) else ""
    return f"{proto}://{host}{stage}{PREFIX}"


def _error_body(status: int, scim_type: str | None, detail: str) -> dict[str, Any]:
    """RFC 7644 §3.12, nothing more: ``schemas``, ``status`` (a string), ``scimType`` if any, ``detail``."""
    return Error(status=status, scim_type=scim_type, detail=detail).model_dump(scim_ctx=Context.DEFAULT)


def _error(status: int, scim_type: str | None, detail: str) -> dict[str, Any]:
    headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if status == 401 else {}
    if status >= 500:
        status = 500
    return _response(status, _error_body(status, scim_type, detail), headers)


def _response(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    out = {"Content-Type": CONTENT_TYPE, **(headers or {})}
    return {"statusCode": status, "headers": out, "isBase64Encoded": False,
            "body": "" if body is None else json.dumps(body, separators=(",", ":"))}


def _json(req: Request) -> dict[str, Any]:
    if req.body is None:
        raise InvalidSyntaxException(detail="A JSON body is required.")
    try:
        data = json.loads(req.body)
    except ValueError:
        raise InvalidSyntaxException(detail="The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidSyntaxException(detail="The body must be a JSON object.")
    return data


# --- routing --------------------------------------------------------------------

Reply = tuple[int, Any, dict[str, str]]


# (resource, number of segments) -> {method: handler}; a path listed here answers 405 for other methods.
_ROUTES: dict[tuple[str, int], dict[str, Callable[..., Reply]]] = {}


def _routes() -> dict[tuple[str, int], dict[str, Callable[..., Reply]]]:
    if not _ROUTES:
        _ROUTES.update({
            ("ServiceProviderConfig", 1): {"GET": _service_provider_config},
            ("ResourceTypes", 1): {"GET": lambda req: _discovery(req, list(_provider().resource_types),
                                                                 ResourceType, None)},
            ("ResourceTypes", 2): {"GET": lambda req, name: _discovery(req, list(_provider().resource_types),
                                                                       ResourceType, name)},
            ("Schemas", 1): {"GET": lambda req: _discovery(req, list(_provider().schemas), Schema, None)},
            ("Schemas", 2): {"GET": lambda req, urn: _discovery(req, list(_provider().schemas), Schema, urn)},
            ("Users", 1): {"GET": _list_users, "POST": _create_user},
            ("Users", 2): {"GET": _get_user, "PUT": _replace_user, "PATCH": _patch_user, "DELETE": _delete_user},
            ("Groups", 1): {"GET": _list_groups, "POST": _create_group},
            ("Groups", 2): {"GET": _get_group, "PUT": _replace_group, "PATCH": _patch_group,
                            "DELETE": _delete_group},
        })
    return _ROUTES


def _route(req: Request) -> Reply:
    seg, m = req.segments, req.method
    if seg == [".search"]:  # RFC 7644 §3.4.3 at the root: Users and Groups in one listing
        if m != "POST":
            raise _Reply(405, _error_body(405, None, f"{PREFIX}/.search answers POST only."), {"Allow": "POST"})
        return _search_root(req, _search_body(req))
    if len(seg) == 2 and seg[0] in ("Users", "Groups") and seg[1] == ".search":
        # RFC 7644 §3.4.3: the query of a GET, as a SearchRequest body.
        if m != "POST":
            raise _Reply(405, _error_body(405, None, f"{PREFIX}/{seg[0]}/.search answers POST only."),
                         {"Allow": "POST"})
        return (_list_users if seg[0] == "Users" else _list_groups)(req, _search_body(req))
    methods = _routes().get((seg[0], len(seg))) if seg else None
    if methods is None:
        raise NotFoundException(detail=f"No SCIM endpoint {m} {PREFIX}/{'/'.join(seg)[:100]}.")
    fn = methods.get(m)
    if fn is None:
        allow = ", ".join(methods)
        raise _Reply(405, _error_body(405, None, f"{m[:10]} is not supported here; allowed: {allow}."),
                     {"Allow": allow})
    return fn(req, *seg[1:])


def _response_parameters(req: Request) -> Any:
    return ResponseParameters.model_validate(
        {k: req.query[k] for k in ("attributes", "excludedAttributes") if req.query.get(k)})


def _dump(resource: Any, req: Request, ctx: Context = Context.RESOURCE_QUERY_RESPONSE) -> dict[str, Any]:
    return resource.model_dump(scim_ctx=ctx, response_parameters=_response_parameters(req))


def _search(req: Request, model: Any, body: dict[str, Any] | None = None) -> Any:
    """The SearchRequest of a list: the query string's parameters, or a ``/.search`` POST's body."""
    if body is None:
        body = {k: req.query[k] for k in ("filter", "startIndex", "count", "attributes", "excludedAttributes")
                if req.query.get(k) not in (None, "")}
    return SearchRequest[model].model_validate(body, scim_ctx=Context.RESOURCE_QUERY_REQUEST)


def _search_body(req: Request) -> dict[str, Any]:
    body = _json(req)
    if body.get("sortBy") or body.get("sortOrder"):
        raise InvalidValueException(detail="Sorting is not supported (ServiceProviderConfig sort.supported).")
    return body


def _page(req: Request, search: Any, model: Any, resources: Iterable[Any]) -> Reply:
    """The request's filter applied to ``resources``, then the requested page of what matched."""
    return _paged(search, model, [r for r in resources if search.filter is None or search.filter.match(r)])


def _paged(search: Any, model: Any, matches: list[Any]) -> Reply:
    """The requested page (``startIndex``, ``count``) of ``matches`` as a ListResponse."""
    start = max(1, int(search.start_index or 1))
    count = DEFAULT_COUNT if search.count is None else max(0, min(int(search.count), MAX_RESULTS))
    page = matches[start - 1:start - 1 + count]
    listing = ListResponse[model](total_results=len(matches), start_index=start, items_per_page=len(page),
                                  resources=page)
    return 200, listing.model_dump(scim_ctx=Context.SEARCH_RESPONSE, response_parameters=search), {}


def _search_root(req: Request, body: dict[str, Any]) -> Reply:
    """``POST /.search``: the SearchRequest over Users, then Groups, one listing (users first).

    RFC 7644 §3.4.3 lets a root filter name attributes of several resource types: a type
    whose schema lacks an attribute the filter names contributes nothing (``userName eq``
    finds users only, ``members.value eq`` groups only); a filter no type can evaluate is
    ``400 invalidFilter``.  Each type is read as its own list would be (the same key plans,
    else its partition: docs/scim.md "Filters and their cost").
    """
    searches: list[tuple[Any, Any]] = []
    refused: ValidationError | None = None
    for model in (UserResource, Group):
        try:
            searches.append((model, _search(req, model, body)))
        except ValidationError as exc:
            refused = refused or exc
    if not searches:
        assert refused is not None
        raise refused
    matches: list[Any] = []
    for model, search in searches:
        ast = search.filter.ast if search.filter else None
        if model is UserResource:
            found: Iterable[Any] = (user_resource(user, req.base_url)
                                    for user in _users_for(req.tenant_id, filters.plan(ast, "User"))
                                    if not user.scim_deleted_at)
        else:
            found = (group_resource(group, req.base_url) for group in _groups_for(req, filters.plan(ast, "Group")))
        matches += [r for r in found if search.filter is None or search.filter.match(r)]
    both = Union[UserResource, Group] if len(searches) == 2 else searches[0][0]
    return _paged(searches[0][1], both, matches)


# --- discovery ------------------------------------------------------------------

def _service_provider_config(req: Request) -> Reply:
    body = _provider().config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    body["meta"] = {"resourceType": "ServiceProviderConfig", "location": f"{req.base_url}/ServiceProviderConfig"}
    return 200, body, {}


def _discovery(req: Request, items: list[Any], model: Any, wanted: str | None) -> Reply:
    if wanted is not None:
        for item in items:
            if wanted in (item.id, getattr(item, "name", None)):
                return 200, item.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE), {}
        raise NotFoundException(detail=f"No such {model.__name__} {wanted[:100]!r}.")
    listing = ListResponse[model](total_results=len(items), start_index=1, items_per_page=len(items),
                                  resources=items)
    return 200, listing.model_dump(scim_ctx=Context.SEARCH_RESPONSE), {}


# --- users ----------------------------------------------------------------------

def _audit_view(user: User) -> dict[str, Any]:
    view = {"userName": user.user_name, "email": user.email, "displayName": user.display_name, "roles": list(user.roles or []),
            "status": user.status, "externalId": user.external_id}
    return {k: v for k, v in view.items() if v is not None}


def _tenant_settings(tenant_id: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """The tenant's email domains and its role map (1 GetItem)."""
    tenant = Tenant.get(tenant_id)
    role_map = tenant.scim_role_map.as_dict() if tenant.scim_role_map is not None else {}
    return (tuple(d.lower() for d in (tenant.domains or [])),
            {str(k).strip().lower(): str(v) for k, v in role_map.items()})


def _fields(req: Request, resource: Any) -> dict[str, Any]:
    domains, role_map = _tenant_settings(req.tenant_id)
    return user_fields(resource, domains, role_map)


def _with_user_name(tenant_id: str, user_name: str) -> list[User]:
    """Users of the tenant whose userName is ``user_name`` in any case (2 Queries: by_user_name, by_email)."""
    wanted = user_name.strip().lower()
    if not _key_ok(user_name_key(tenant_id, wanted)):
        return []
    found = {u.user_id: u for u in User.with_user_name(tenant_id, wanted)}
    for u in User.by_email.query(wanted, limit=10):
        if u.tenant_id == tenant_id:
            found.setdefault(u.user_id, u)
    return [u for u in found.values() if (u.user_name or u.email).strip().lower() == wanted]


def _check_unique(req: Request, fields: dict[str, Any], user: User | None) -> User | None:
    """userName unique in the tenant (case-insensitive) and email unique, among users other than ``user``.

    Returns the SCIM-deleted user of this tenant that holds the email (a create brings it back), if any.
    The email: its claim first (1 consistent GetItem; docs/data-model.md "Email claims"), then the
    by_email index (users of other tenants, and of this one written before claims were backfilled).
    userName reads the by_user_name and by_email indexes (eventually consistent; docs/scim.md, Known
    limits).  Only the claim is atomic: the write itself claims the address in its transaction.
    """
    me = (user.tenant_id, user.user_id) if user is not None else None
    for other in _with_user_name(req.tenant_id, fields["user_name"]):
        if (other.tenant_id, other.user_id) != me and not other.scim_deleted_at:
            raise UniquenessException(detail="A user with this userName already exists.")
    claimed = EmailClaim.holder_of(req.tenant_id, fields["email"])
    if claimed is not None:
        holder: User | None = User.find(req.tenant_id, claimed) if (req.tenant_id, claimed) != me else None
    else:
        holder = User.find_by_email(fields["email"])
    if holder is None or (holder.tenant_id, holder.user_id) == me:
        if claimed is None or (req.tenant_id, claimed) == me:
            return None
        raise UniquenessException(detail="Another user already has this email address.")
    if holder.tenant_id == req.tenant_id and holder.scim_deleted_at and user is None:
        return holder
    raise UniquenessException(detail="Another user already has this email address.")


def _key_ok(value: str) -> bool:
    """DynamoDB refuses empty and over-long key values: such an id names nothing."""
    return 0 < len(value.encode("utf-8")) <= 255


def _new_user_id(tenant_id: str, external_id: str | None) -> str:
    """The IdP's ``externalId`` when it can be a key and is free, else a fresh id.

    Sign-in finds a user by the token's subject claim (``sub``, or the tenant's
    ``subject_claim``); an IdP whose SCIM ``externalId`` carries that same value
    (Okta's user id, Entra's object id with ``subject_claim: oid``) makes the
    provisioned record the one its users sign in to (docs/scim.md).
    """
    if external_id and _key_ok(external_id) and User.find(tenant_id, external_id) is None:
        return external_id
    return uuid.uuid4().hex


def _live_user(req: Request, user_id: str) -> User:
    if not _key_ok(user_id):
        raise NotFoundException(detail="No such user in this directory.")
    try:  # consistent: an IdP reads back what it just wrote
        user: User | None = User.get(req.tenant_id, user_id, consistent_read=True)
    except User.DoesNotExist:
        user = None
    if user is None or user.scim_deleted_at:
        raise NotFoundException(detail=f"No user {user_id[:64]!r} in this directory.")
    return user


def _users_for(tenant_id: str, plan: tuple[filters.Lookup, ...] | None) -> Iterator[User]:
    """The candidates of a plan, all of ``tenant_id`` (docs/scim.md: filter support and cost)."""
    if plan is None:
        yield from User.query(tenant_id)  # 1 Query request per 1 MB page of the tenant's partition
        return
    seen: set[str] = set()
    for lookup in plan:
        if not _key_ok(lookup.value):
            continue
        if lookup.kind == "id":
            found = [User.find(tenant_id, lookup.value)]
        else:
            found = _with_user_name(tenant_id, lookup.value)
        for user in found:
            if user is not None and user.user_id not in seen:
                seen.add(user.user_id)
                yield user


def _list_users(req: Request, body: dict[str, Any] | None = None) -> Reply:
    search = _search(req, UserResource, body)
    plan = filters.plan(search.filter.ast if search.filter else None, "User")
    return _page(req, search, UserResource, (user_resource(user, req.base_url)
                                             for user in _users_for(req.tenant_id, plan) if not user.scim_deleted_at))


def _get_user(req: Request, user_id: str) -> Reply:
    return 200, _dump(user_resource(_live_user(req, user_id), req.base_url), req), {}


def _create_user(req: Request) -> Reply:
    resource = UserResource.model_validate(_json(req), scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    fields = _fields(req, resource)
    now = req.call.now_ms()
    existing = _check_unique(req, fields, None)
    if existing is not None:
        # A user DELETEd over SCIM comes back under its old id (messages still refer to it).
        before = _audit_view(existing)
        existing.update(actions=[User.scim_deleted_at.remove(), User.groups.set([])])
        user = _write_user(req, existing, fields, now)
        audit(req.call, "scim.user.create", user.user_id, before=before, after=_audit_view(user))
    else:
        user = User(tenant_id=req.tenant_id, user_id=_new_user_id(req.tenant_id, fields["external_id"]),
                    email=fields["email"], user_name=fields["user_name"],
                    user_name_key=user_name_key(req.tenant_id, fields["user_name"]),
                    display_name=fields["display_name"], roles=fields["roles"] or ["member"],
                    status="active" if fields["active"] else "deactivated", external_id=fields["external_id"],
                    scim_attributes=fields["scim_attributes"], updated_at=now)
        try:  # the user and its email claim: 1 TransactWriteItems
            email_claims.write(user, old_email=None, condition=User.user_id.does_not_exist())
        except email_claims.EmailTaken:
            raise UniquenessException(detail="Another user already has this email address.") from None
        except email_claims.UserConditionFailed:
            raise UniquenessException(detail="The user id is taken; retry.") from None
        search_index.sync(set(), user)
        audit(req.call, "scim.user.create", user.user_id, after=_audit_view(user))
    body = _dump(user_resource(user, req.base_url), req, Context.RESOURCE_CREATION_RESPONSE)
    return 201, body, {"Location": f"{req.base_url}/Users/{user.user_id}"}


def _write_user(req: Request, user: User, fields: dict[str, Any], now: int) -> User:
    """Write the mapped columns, then the status (deactivation closes sockets). Returns the user.

    The caller has checked userName and email uniqueness (``_check_unique``).  The user's
    people-search words follow the new name, email and status (``search_index.sync``).
    """
    before = search_index.entries_of(user)
    old_email = user.email
    values = [(User.email, fields["email"]), (User.display_name, fields["display_name"]),
              (User.user_name, fields["user_name"]),
              (User.user_name_key, user_name_key(user.tenant_id, fields["user_name"])), (User.updated_at, now),
              (User.external_id, fields["external_id"] or None), (User.scim_attributes, fields["scim_attributes"] or None)]
    if fields["roles"] is not None:
        values.append((User.roles, fields["roles"]))
    actions = [attr.set(value) if value is not None else attr.remove() for attr, value in values]
    # The update, the claim of the (new) email and the release of a replaced one: 1 TransactWriteItems.
    for attr, value in values:  # a transaction does not read the item back
        setattr(user, attr.attr_name, value)
    try:
        email_claims.write(user, old_email=old_email, actions=actions, condition=User.user_id.exists())
    except email_claims.EmailTaken:
        raise UniquenessException(detail="Another user already has this email address.") from None
    except email_claims.UserConditionFailed:
        raise NotFoundException(detail=f"No user {user.user_id[:64]!r} in this directory.") from None
    directory.set_active(req.call, user, fields["active"], now)
    search_index.sync(before, user)
    return user


def _update_user(req: Request, user: User, resource: Any) -> Reply:
    fields = _fields(req, resource)
    _check_unique(req, fields, user)
    before = _audit_view(user)
    was_active = user.status == "active"
    user = _write_user(req, user, fields, req.call.now_ms())
    action = ("scim.user.deactivate" if was_active and not fields["active"]
              else "scim.user.reactivate" if fields["active"] and not was_active else "scim.user.update")
    audit(req.call, action, user.user_id, before=before, after=_audit_view(user))
    return 200, _dump(user_resource(user, req.base_url), req, Context.RESOURCE_REPLACEMENT_RESPONSE), {}


def _replace_user(req: Request, user_id: str) -> Reply:
    user = _live_user(req, user_id)
    resource = UserResource.model_validate(_json(req), scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
    return _update_user(req, user, resource)


def _patch_user(req: Request, user_id: str) -> Reply:
    user = _live_user(req, user_id)
    patch = PatchOp[UserResource].model_validate(_json(req), scim_ctx=Context.RESOURCE_PATCH_REQUEST)
    resource = user_resource(user, req.base_url)
    patch.patch(resource)
    return _update_user(req, user, resource)


def _delete_user(req: Request, user_id: str) -> Reply:
    """Deactivate (sockets closed, tokens refused), leave every group, answer 404 from now on."""
    user = _live_user(req, user_id)
    before = _audit_view(user)
    indexed = search_index.entries_of(user)
    now = req.call.now_ms()
    user.update(actions=[User.scim_deleted_at.set(now), User.updated_at.set(now)])
    directory.set_active(req.call, user, False, now)
    search_index.sync(indexed, user)  # no longer found by anyone
    for group in DirectoryGroup.of_tenant(req.tenant_id):
        if user.user_id in (group.members or set()):
            group.update(actions=[DirectoryGroup.members.delete({user.user_id}), DirectoryGroup.updated_at.set(now)])
    user.update(actions=[User.groups.set([])])
    audit(req.call, "scim.user.delete", user.user_id, before=before, after={"status": "deleted"})
    return 204, None, {}


# --- groups ---------------------------------------------------------------------

def _group_view(group: DirectoryGroup) -> dict[str, Any]:
    view = {"displayName": group.display_name, "members": len(group.members or ()),
            "externalId": group.external_id}
    return {k: v for k, v in view.items() if v is not None}


def _live_group(req: Request, group_id: str) -> DirectoryGroup:
    group = DirectoryGroup.find(req.tenant_id, group_id) if _key_ok(group_id) else None
    if group is None:
        raise NotFoundException(detail=f"No group {group_id[:64]!r} in this directory.")
    return group


def _check_group(req: Request, fields: dict[str, Any], group_id: str | None, old_members: set[str]) -> None:
    """displayName unique in the tenant (Query its groups); new members are live users of the tenant."""
    wanted = fields["display_name"].lower()
    for other in DirectoryGroup.query(req.tenant_id, attributes_to_get=["group_id", "display_name"]):
        if other.group_id != group_id and other.display_name.lower() == wanted:
            raise UniquenessException(detail="A group with this displayName already exists.")
    added = fields["members"] - old_members
    missing = added - directory.existing_users(req.tenant_id, added) if added else set()
    if missing:
        raise InvalidValueException(detail=f"members are not users of this directory: {sorted(missing)[:5]}")


def _groups_for(req: Request, plan: tuple[filters.Lookup, ...] | None) -> list[DirectoryGroup]:
    """The candidates of a plan: the tenant's groups (1 Query per page), or those the plan's ids name."""
    if plan is None:
        return list(DirectoryGroup.of_tenant(req.tenant_id))
    found = [DirectoryGroup.find(req.tenant_id, lookup.value) for lookup in plan if _key_ok(lookup.value)]
    return [group for group in found if group is not None]


def _list_groups(req: Request, body: dict[str, Any] | None = None) -> Reply:
    search = _search(req, Group, body)
    plan = filters.plan(search.filter.ast if search.filter else None, "Group")
    return _page(req, search, Group, (group_resource(group, req.base_url) for group in _groups_for(req, plan)))


def _get_group(req: Request, group_id: str) -> Reply:
    return 200, _dump(group_resource(_live_group(req, group_id), req.base_url), req), {}


def _create_group(req: Request) -> Reply:
    resource = Group.model_validate(_json(req), scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    fields = group_fields(resource)
    _check_group(req, fields, None, set())
    now = req.call.now_ms()
    group = DirectoryGroup(tenant_id=req.tenant_id, group_id=uuid.uuid4().hex, display_name=fields["display_name"],
                           external_id=fields["external_id"], members=set(fields["members"]),
                           member_display=fields["member_display"], created_at=now, updated_at=now)
    group.save(condition=DirectoryGroup.group_id.does_not_exist())
    directory.sync_group(req.tenant_id, None, group.display_name, set(), set(fields["members"]))
    audit(req.call, "scim.group.create", group.group_id, after=_group_view(group))
    body = _dump(group_resource(group, req.base_url), req, Context.RESOURCE_CREATION_RESPONSE)
    return 201, body, {"Location": f"{req.base_url}/Groups/{group.group_id}"}


def _update_group(req: Request, group_id: str, new_state: Callable[[DirectoryGroup], Group]) -> Reply:
    """Apply ``new_state`` to the stored group under a condition on its version; retried on a race."""
    for _ in range(_RETRIES):
        group = _live_group(req, group_id)
        fields = group_fields(new_state(group))
        old_members, old_name, before = set(group.members or ()), group.display_name, _group_view(group)
        _check_group(req, fields, group.group_id, old_members)
        now = max(req.call.now_ms(), int(group.updated_at) + 1)
        actions = [DirectoryGroup.display_name.set(fields["display_name"]), DirectoryGroup.updated_at.set(now),
                   DirectoryGroup.members.set(fields["members"]) if fields["members"]
                   else DirectoryGroup.members.remove(),
                   DirectoryGroup.external_id.set(fields["external_id"]) if fields["external_id"]
                   else DirectoryGroup.external_id.remove(),
                   DirectoryGroup.member_display.set(fields["member_display"]) if fields["member_display"]
                   else DirectoryGroup.member_display.remove()]
        try:
            group.update(actions=actions, condition=DirectoryGroup.updated_at == group.updated_at)
        except UpdateError as exc:
            if condition_failed(exc):
                continue
            raise
        directory.sync_group(req.tenant_id, old_name, group.display_name, old_members, set(fields["members"]))
        if group.expert_topics:  # a group of expert pools: its new members are marked (docs/experts.md)
            mark_expert_pool([user_key(req.tenant_id, uid) for uid in sorted(set(fields["members"]) - old_members)],
                             set(group.expert_topics))
        audit(req.call, "scim.group.update", group.group_id, before=before, after=_group_view(group))
        return 200, _dump(group_resource(group, req.base_url), req, Context.RESOURCE_REPLACEMENT_RESPONSE), {}
    raise Conflict("The group kept changing meanwhile; retry.")


def _replace_group(req: Request, group_id: str) -> Reply:
    resource = Group.model_validate(_json(req), scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
    return _update_group(req, group_id, lambda _group: resource)


def _patch_group(req: Request, group_id: str) -> Reply:
    patch = PatchOp[Group].model_validate(_json(req), scim_ctx=Context.RESOURCE_PATCH_REQUEST)

    def apply(group: DirectoryGroup) -> Group:
        resource = group_resource(group, req.base_url)
        patch.patch(resource)
        return resource
    return _update_group(req, group_id, apply)


def _delete_group(req: Request, group_id: str) -> Reply:
    group = _live_group(req, group_id)
    group.delete()
    directory.sync_group(req.tenant_id, group.display_name, None, set(group.members or ()), set())
    audit(req.call, "scim.group.delete", group.group_id, before=_group_view(group))
    return 204, None, {}
