"""People of a company, found by id, e-mail or SCIM userName."""
from __future__ import annotations

import time

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from .base import _Meta, _S


class UsersByEmail(GlobalSecondaryIndex["User"]):
    """User by exact (lower-cased) email, across tenants (emails are unique)."""

    class Meta:
        index_name = "by_email"
        projection = AllProjection()

    email = UnicodeAttribute(hash_key=True)


class UsersByUserName(GlobalSecondaryIndex["User"]):
    """User by ``<tenant_id>#<lower-cased SCIM userName>`` (sparse: users provisioned over SCIM only)."""

    class Meta:
        index_name = "by_user_name"
        projection = AllProjection()

    user_name_key = UnicodeAttribute(hash_key=True)


class User(Model):
    """A member of a tenant's directory. ``user_id`` is the IdP's ``sub``."""

    class Meta(_Meta):
        table_name = _S.users_table

    tenant_id = UnicodeAttribute(hash_key=True)
    user_id = UnicodeAttribute(range_key=True)
    email = UnicodeAttribute()
    display_name = UnicodeAttribute()
    roles = ListAttribute(of=UnicodeAttribute, default=lambda: ["member"])
    status = UnicodeAttribute(default="active")  # active | deactivated
    groups = ListAttribute(of=UnicodeAttribute, default=list)  # directory groups (external-access policy)
    created_at = NumberAttribute(default=lambda: int(time.time()))
    # Directory sync (SCIM, docs/scim.md): the IdP's id for this user, the SCIM attributes we keep
    # but do not interpret (JSON text: name, emails, title...), and a DELETE's mark (the record stays,
    # deactivated, because messages and memberships refer to it; SCIM then answers 404 for it).
    external_id = UnicodeAttribute(null=True)
    scim_attributes = UnicodeAttribute(null=True)
    scim_deleted_at = NumberAttribute(null=True)
    updated_at = NumberAttribute(null=True)
    # The SCIM userName as the IdP sent it (free-form; absent: the email is the userName), and its
    # lookup key ``<tenant_id>#<lower-cased userName>`` for ``userName eq`` and its uniqueness.
    user_name = UnicodeAttribute(null=True)
    user_name_key = UnicodeAttribute(null=True)

    by_email = UsersByEmail()
    by_user_name = UsersByUserName()

    @classmethod
    def find(cls, tenant_id: str, user_id: str) -> "User | None":
        """GetItem: 1 request."""
        try:
            return cls.get(tenant_id, user_id)
        except cls.DoesNotExist:
            return None

    @classmethod
    def find_by_email(cls, email: str) -> "User | None":
        """Query by_email: 1 request."""
        for user in cls.by_email.query(email.lower(), limit=2):
            return user
        return None

    @classmethod
    def with_user_name(cls, tenant_id: str, user_name: str) -> list["User"]:
        """Query by_user_name: 1 request (case-insensitive, this tenant only)."""
        return list(cls.by_user_name.query(user_name_key(tenant_id, user_name), limit=10))

    @property
    def active(self) -> bool:
        return self.status == "active"


def user_name_key(tenant_id: str, user_name: str) -> str:
    return f"{tenant_id}#{user_name.strip().lower()}"


# --- email uniqueness ----------------------------------------------------------------

class EmailClaim(Model):
    """Which user of a tenant holds an email address: the authority on email uniqueness.

    An item of the users table outside every user's partition: ``tenant_id`` =
    ``<tenant>#<lower-cased email>``, ``user_id`` = ``EMAIL_CLAIM``, ``holder`` =
    the user id.  It is written in the same TransactWriteItems as every user
    creation and email change (``chalicelib/email_claims.py``), under the
    condition that it does not exist or is already this user's, so two
    concurrent writers of one address cannot both succeed (the ``by_email``
    index they used to check is eventually consistent).  It carries neither
    ``email`` nor ``user_name_key``, so it is in no index of the table, and a
    Query of a tenant's users (partition ``<tenant>``) never meets it.
    """

    class Meta(_Meta):
        table_name = _S.users_table

    key = UnicodeAttribute(hash_key=True, attr_name="tenant_id")
    kind = UnicodeAttribute(range_key=True, attr_name="user_id")
    holder = UnicodeAttribute()
    claimed_at = NumberAttribute(default=lambda: int(time.time()))

    @classmethod
    def item(cls, tenant_id: str, email: str, holder: str = "") -> "EmailClaim":
        return cls(key=email_claim_key(tenant_id, email), kind=EMAIL_CLAIM, holder=holder)

    @classmethod
    def holder_of(cls, tenant_id: str, email: str) -> str | None:
        """GetItem (consistent): 1 request; the holder's user id, None if the address is free."""
        try:
            return cls.get(email_claim_key(tenant_id, email), EMAIL_CLAIM, consistent_read=True).holder
        except cls.DoesNotExist:
            return None


EMAIL_CLAIM = "~email"  # the sort key of a claim item (never a user's: it lives outside every user partition)


def email_claim_key(tenant_id: str, email: str) -> str:
    return f"{tenant_id}#{email.strip().lower()}"
