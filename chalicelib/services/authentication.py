"""Who a token belongs to: verify it, then find (or provision) its holder in the directory.

Shared by the $connect authorizer (or $connect without one), REST and the
connection record's lifecycle (``connections``); apart from the latter so the
authorizer and the REST API load none of the connection and presence models.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..identity import Principal, TenantIdentity
from ..models import User
from ..protocol.errors import Conflict, Forbidden

if TYPE_CHECKING:
    from ..auth import TokenVerifier


def authenticate(verifier: "TokenVerifier", token: str | None) -> tuple[Principal, User]:
    """Verify the token and load the directory entry of its holder (1 GetItem).

    An unknown user is refused unless the tenant auto-provisions members;
    a deactivated user is always refused.
    """
    principal, tenant = verifier.verify(token)
    user = User.find(principal.tenant_id, principal.user_id)
    if user is None:
        user = _provision(principal, tenant)
    if not user.active:
        raise Forbidden("User is deactivated.")
    return principal, user


def _provision(principal: Principal, tenant: TenantIdentity) -> User:
    """Create the member record of a first sign-in (auto-provisioning tenants only).

    Emails are unique (docs/data-model.md "Email claims"): a subject whose email
    another user already holds is refused with ``conflict`` instead of becoming a
    second person with that address.  The user and its email claim are one
    TransactWriteItems (``email_claims.write``), so of concurrent first sign-ins
    with one address exactly one creates a user; the Query by_email before it
    refuses early, and covers users of another tenant and users written before
    claims existed (until ``tenantctl email-claims-backfill``).
    """
    if not tenant.auto_provision:
        raise Forbidden("User is not in the tenant's directory.")
    from .. import email_claims, search_index  # a first sign-in only: not on every cold start that checks a token

    holder = User.find_by_email(principal.email)
    if holder is not None and (holder.tenant_id, holder.user_id) != (principal.tenant_id, principal.user_id):
        raise _email_held()
    user = User(tenant_id=principal.tenant_id, user_id=principal.user_id, email=principal.email,
                display_name=principal.email.split("@", 1)[0], roles=["member"])
    # Never overwrite a record a concurrent sign-in or directory sync just wrote.
    try:
        email_claims.write(user, old_email=None, condition=User.user_id.does_not_exist())
    except email_claims.EmailTaken:
        raise _email_held() from None
    except email_claims.UserConditionFailed:
        try:
            return User.get(principal.tenant_id, principal.user_id, consistent_read=True)
        except User.DoesNotExist:
            raise Conflict("The directory entry changed meanwhile; sign in again.") from None
    search_index.sync(set(), user)  # findable by colleagues from now on (1 BatchWriteItem)
    return user


def _email_held() -> Conflict:
    return Conflict("Another user of the directory already has this email address; sign in as that user, "
                    "or have an admin change or remove it.")
