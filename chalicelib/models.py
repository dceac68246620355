"""pynamodb models: the only place that knows table names, keys and indexes.

Every access pattern is a GetItem, BatchGetItem or Query on a key or index;
they are listed in ``docs/data-model.md``.  Table names come from
:mod:`chalicelib.config`; the endpoint comes from the standard
``AWS_ENDPOINT_URL_DYNAMODB``/``AWS_ENDPOINT_URL`` variables through botocore
(``Meta.host`` stays unset on purpose).
"""
from __future__ import annotations

import time
from typing import Iterator

from pynamodb.attributes import (BooleanAttribute, ListAttribute, NumberAttribute,
                                 UnicodeAttribute)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from .config import settings

_S = settings()


class _Meta:
    region = _S.region
    billing_mode = "PAY_PER_REQUEST"
    connect_timeout_seconds = 2
    read_timeout_seconds = 5
    max_retry_attempts = 3


# --- tenants -----------------------------------------------------------------

class TenantsByIssuer(GlobalSecondaryIndex["Tenant"]):
    """Tenant by its OIDC issuer: the only way a token is mapped to a tenant."""

    class Meta:
        index_name = "by_issuer"
        projection = AllProjection()

    issuer = UnicodeAttribute(hash_key=True)


class Tenant(Model):
    """A company: its identity provider configuration and email domains."""

    class Meta(_Meta):
        table_name = _S.tenants_table

    tenant_id = UnicodeAttribute(hash_key=True)
    display_name = UnicodeAttribute()
    domains = ListAttribute(of=UnicodeAttribute, default=list)
    issuer = UnicodeAttribute()
    audience = UnicodeAttribute()
    # Where JWKS lives; None -> discovered from {issuer}/.well-known/openid-configuration.
    jwks_uri = UnicodeAttribute(null=True)
    email_claim = UnicodeAttribute(default="email")
    roles_claim = UnicodeAttribute(default="roles")
    algorithms = ListAttribute(of=UnicodeAttribute, default=lambda: ["RS256", "ES256"])
    # Create a member record on first sign-in of an unknown user of this tenant.
    auto_provision = BooleanAttribute(default=False)
    status = UnicodeAttribute(default="active")
    created_at = NumberAttribute(default=lambda: int(time.time()))

    by_issuer = TenantsByIssuer()

    @classmethod
    def for_issuer(cls, issuer: str) -> "Tenant | None":
        """Query by_issuer: 1 request."""
        for tenant in cls.by_issuer.query(issuer, limit=2):
            return tenant
        return None


class DomainClaim(Model):
    """Email domain -> the one tenant that owns it (federation finds tenants by domain)."""

    class Meta(_Meta):
        table_name = _S.domains_table

    domain = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()

    @classmethod
    def claim(cls, domain: str, tenant_id: str) -> bool:
        """Conditional PutItem: True if the domain is now (or already was) this tenant's."""
        try:
            cls(domain=domain, tenant_id=tenant_id).save(
                condition=cls.domain.does_not_exist() | (cls.tenant_id == tenant_id))
            return True
        except cls.PutError:
            return False


# --- users -------------------------------------------------------------------

class UsersByEmail(GlobalSecondaryIndex["User"]):
    """User by exact (lower-cased) email, across tenants (emails are unique)."""

    class Meta:
        index_name = "by_email"
        projection = AllProjection()

    email = UnicodeAttribute(hash_key=True)


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
    created_at = NumberAttribute(default=lambda: int(time.time()))

    by_email = UsersByEmail()

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

    @property
    def active(self) -> bool:
        return self.status == "active"


# --- connections -------------------------------------------------------------

def user_key(tenant_id: str, user_id: str) -> str:
    return f"{tenant_id}#{user_id}"


class ConnectionsByUser(GlobalSecondaryIndex["Connection"]):
    """A user's live connections (devices)."""

    class Meta:
        index_name = "by_user"
        projection = AllProjection()

    tenant_user = UnicodeAttribute(hash_key=True)
    connection_id = UnicodeAttribute(range_key=True)


class Connection(Model):
    """One open WebSocket (one device). Written on $connect, deleted on $disconnect.

    ``expires_at`` is a DynamoDB TTL attribute: a record whose $disconnect was
    lost disappears after API Gateway's maximum connection age.
    """

    class Meta(_Meta):
        table_name = _S.connections_table

    connection_id = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    tenant_user = UnicodeAttribute()
    # Copied from the verified token so later frames need no second lookup.
    email = UnicodeAttribute()
    roles = ListAttribute(of=UnicodeAttribute, default=list)
    device = UnicodeAttribute(null=True)
    source_ip = UnicodeAttribute(null=True)
    connected_at = NumberAttribute()
    expires_at = NumberAttribute()

    by_user = ConnectionsByUser()

    @classmethod
    def find(cls, connection_id: str) -> "Connection | None":
        """GetItem: 1 request."""
        try:
            return cls.get(connection_id)
        except cls.DoesNotExist:
            return None

    @classmethod
    def of_user(cls, tenant_id: str, user_id: str) -> Iterator["Connection"]:
        """Query by_user: 1 request per page."""
        return cls.by_user.query(user_key(tenant_id, user_id))

    @classmethod
    def remove(cls, connection_id: str) -> None:
        """DeleteItem: 1 request; deleting an absent record is not an error."""
        cls(connection_id=connection_id).delete()


ALL_MODELS = (Tenant, DomainClaim, User, Connection)

# DynamoDB TTL attribute per table (the local stack and infra/ enable these).
TTL_ATTRIBUTES = {Connection: "expires_at"}


def create_tables(wait: bool = True) -> None:
    """Create every table that is missing (idempotent); used by the local stack and ops."""
    for model in ALL_MODELS:
        if not model.exists():
            model.create_table(wait=wait)
        ttl_attr = TTL_ATTRIBUTES.get(model)
        if ttl_attr:
            client = model._get_connection().connection.client
            desc = client.describe_time_to_live(TableName=model.Meta.table_name)
            if desc["TimeToLiveDescription"]["TimeToLiveStatus"] not in ("ENABLED", "ENABLING"):
                client.update_time_to_live(
                    TableName=model.Meta.table_name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attr},
                )
