"""What maps to what: our directory records <-> SCIM User/Group resources, and the discovery documents.

User (docs/scim.md has the table):
  id <- user_id; userName <-> user_name (free-form, unique in the tenant
  case-insensitively; a user never given one shows its email);
  emails -> email (the primary entry, else type work, else the first; else
  userName if it is an address; it must be in the tenant's domains);
  displayName <-> display_name (derived from name/email when absent);
  active <-> status (active | deactivated); roles[].value -> roles through
  the tenant's role map (unknown -> member; kept as they are when a request
  omits roles); externalId <-> external_id; everything else the IdP sends
  (name, emails, roles, title, the enterprise extension...) is kept
  verbatim in ``scim_attributes`` and returned as sent.  ``groups`` is not
  returned: membership is managed on Group resources.
Group: id <- group_id; displayName (unique in the tenant); members[].value
  = user ids of the same tenant, members[].display kept; externalId.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from scim2_models import (AuthenticationScheme, Bulk, ChangePassword, Context, EnterpriseUser, ETag, Filter,
                          Group, InvalidValueException, Meta, Patch, PayloadTooLargeException, ResourceType,
                          ScimPolicy, ScimProvider, ServiceProviderConfig, Sort, User)

from ..models import DirectoryGroup
from ..models import User as DirUser
from ..services.admin import ROLES

UserResource = User[EnterpriseUser]
MAX_RESULTS = 200           # ServiceProviderConfig filter.maxResults: the largest page
DEFAULT_COUNT = 100
MAX_KEPT_ATTRIBUTES = 16 * 1024   # bytes of SCIM attributes kept per user
MAX_GROUP_MEMBERS = 5000          # keeps a group item far below DynamoDB's 400 KB
MAX_MEMBER_DISPLAY = 160 * 1024   # bytes of members[].display kept per group (ids + these < 400 KB)
MAX_USER_NAME = 256
# Attributes with a column of their own (never duplicated into scim_attributes). ``emails`` and
# ``roles`` are kept as sent too: what we derive from them (email, product roles) is our own.
_MAPPED = {"schemas", "id", "meta", "userName", "displayName", "active", "externalId", "groups", "password"}


def _iso(ms_or_s: float | None) -> str | None:
    if not ms_or_s:
        return None
    seconds = ms_or_s / 1000 if ms_or_s > 10_000_000_000 else ms_or_s
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def provider() -> ScimProvider:
    """The service description behind /ServiceProviderConfig, /ResourceTypes and /Schemas."""
    config = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
        authentication_schemes=[AuthenticationScheme(
            type="oauthbearertoken", name="Tenant SCIM token", primary=True,
            description="Authorization: Bearer <token>; an admin creates and rotates it with "
                        "POST /admin/scim/token (docs/scim.md).")],
    )
    # Tolerances for what Entra ID and Okta actually send (docs/scim.md): attributes we do not
    # model are dropped rather than refused, a ``remove`` may name its targets in ``value``, and a
    # path filter matching nothing (``emails[type eq "work"].value``) creates that entry.
    policy = ScimPolicy(unknown=ScimPolicy.Unknown.ignore, remove_value_as_filter=ScimPolicy.RemoveValue.apply,
                        unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create)
    return ScimProvider(models=[User, EnterpriseUser, Group], config=config, policy=policy,
                        resource_types=[ResourceType.from_resource(UserResource),
                                        ResourceType.from_resource(Group)])


# --- users -------------------------------------------------------------------

def user_resource(user: DirUser, base_url: str) -> Any:
    """Our record as a SCIM User (validated model, ready to filter, patch or dump)."""
    data: dict[str, Any] = json.loads(user.scim_attributes) if user.scim_attributes else {}
    schemas = ["urn:ietf:params:scim:schemas:core:2.0:User"]
    schemas += [k for k in data if k.lower().startswith("urn:")]
    data.update({"schemas": schemas, "id": user.user_id, "userName": user.user_name or user.email,
                 "displayName": user.display_name, "active": user.status == "active"})
    # Roles as the IdP sent them; a user it never sent roles for shows our product roles.
    data.setdefault("roles", [{"value": r} for r in (user.roles or [])])
    if user.external_id:
        data["externalId"] = user.external_id
    resource = UserResource.model_validate(data)
    resource.meta = Meta(resource_type="User", created=_iso(user.created_at),
                         last_modified=_iso(user.updated_at or user.created_at),
                         location=f"{base_url}/Users/{user.user_id}")
    return resource


def _email_of(resource: Any, user_name: str) -> str:
    """The address we hold for the user: emails' primary entry, else its type work, else its first;
    with no emails, the userName if it is an address (else none: the caller refuses the user)."""
    entries = [e for e in (resource.emails or []) if e.value and str(e.value).strip()]
    chosen = (next((e for e in entries if e.primary), None) or next((e for e in entries if e.type == "work"), None)
              or (entries[0] if entries else None))
    if chosen is not None:
        return str(chosen.value).strip().lower()
    if "@" in user_name:
        return user_name.lower()
    raise InvalidValueException(detail="The user has no email: send emails (the primary entry, else type work, "
                                       "else the first is used) or a userName that is an email address.")


def map_roles(values: list[str], role_map: dict[str, str]) -> list[str]:
    """The IdP's role values as our roles: ours as they are, else the tenant's map, else member."""
    out = set()
    for raw in values:
        value = raw.strip().lower()
        if not value:
            continue
        out.add(value if value in ROLES else role_map.get(value) if role_map.get(value) in ROLES else "member")
    return sorted(out) or ["member"]


def user_fields(resource: Any, domains: tuple[str, ...], role_map: dict[str, str] | None = None) -> dict[str, Any]:
    """The columns a SCIM User sets on our record (raises SCIM errors on values we cannot hold)."""
    user_name = (resource.user_name or "").strip()
    if not user_name or len(user_name) > MAX_USER_NAME:
        raise InvalidValueException(detail=f"userName is required (1-{MAX_USER_NAME} characters).")
    email = _email_of(resource, user_name)
    local, _, domain = email.rpartition("@")
    if not local or not domain or len(email) > 254 or " " in email:
        raise InvalidValueException(detail=f"The user's email {email[:64]!r} is not an email address.")
    if domain not in domains:
        raise InvalidValueException(detail=f"The user's email domain {domain[:64]!r} is not one of the tenant's "
                                           "domains.")
    roles = None
    if resource.roles is not None:
        roles = map_roles([r.value or "" for r in resource.roles], role_map or {})
    name = resource.name
    display = (resource.display_name or (name and name.formatted)
               or " ".join(p for p in ((name and name.given_name), (name and name.family_name)) if p)
               or local).strip()[:256]
    dumped = resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    kept = {k: v for k, v in dumped.items() if k not in _MAPPED}
    text = json.dumps(kept, separators=(",", ":"), sort_keys=True) if kept else None
    if text and len(text.encode()) > MAX_KEPT_ATTRIBUTES:
        raise PayloadTooLargeException(detail=f"The user's attributes exceed {MAX_KEPT_ATTRIBUTES} bytes.")
    return {"user_name": user_name, "email": email, "display_name": display, "roles": roles,
            "active": True if resource.active is None else bool(resource.active),
            "external_id": (resource.external_id or None) and resource.external_id[:256],
            "scim_attributes": text}


# --- groups ------------------------------------------------------------------

def group_resource(group: DirectoryGroup, base_url: str) -> Group:
    display: dict[str, str] = json.loads(group.member_display) if group.member_display else {}
    members = []
    for uid in sorted(group.members or ()):
        member = {"value": uid, "type": "User", "$ref": f"{base_url}/Users/{uid}"}
        if display.get(uid):
            member["display"] = display[uid]
        members.append(member)
    data: dict[str, Any] = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": group.group_id,
                            "displayName": group.display_name, "members": members}
    if group.external_id:
        data["externalId"] = group.external_id
    resource = Group.model_validate(data)
    resource.meta = Meta(resource_type="Group", created=_iso(group.created_at),
                         last_modified=_iso(group.updated_at), location=f"{base_url}/Groups/{group.group_id}")
    return resource


def group_fields(resource: Group) -> dict[str, Any]:
    name = (resource.display_name or "").strip()
    if not name or len(name) > 128:
        raise InvalidValueException(detail="displayName is required (1-128 characters).")
    members = {m.value for m in (resource.members or []) if m.value}
    if any((m.type or "User") != "User" for m in (resource.members or [])):
        raise InvalidValueException(detail="Only users can be group members (no nested groups).")
    if len(members) > MAX_GROUP_MEMBERS:
        raise PayloadTooLargeException(detail=f"A group has at most {MAX_GROUP_MEMBERS} members.")
    display = {m.value: m.display.strip()[:256] for m in (resource.members or [])
               if m.value and m.display and m.display.strip()}
    text = json.dumps(display, separators=(",", ":"), sort_keys=True) if display else None
    if text and len(text.encode()) > MAX_MEMBER_DISPLAY:
        raise PayloadTooLargeException(detail=f"The members' display names exceed {MAX_MEMBER_DISPLAY} bytes.")
    return {"display_name": name, "members": members, "member_display": text,
            "external_id": (resource.external_id or None) and resource.external_id[:256]}
