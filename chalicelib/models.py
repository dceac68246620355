"""pynamodb models: the only place that knows table names, keys and indexes.

Every access pattern is a GetItem, BatchGetItem or Query on a key or index;
they are listed in ``docs/data-model.md``.  Table names come from
:mod:`chalicelib.config`; the endpoint comes from the standard
``AWS_ENDPOINT_URL_DYNAMODB``/``AWS_ENDPOINT_URL`` variables through botocore
(``Meta.host`` stays unset on purpose).
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, Iterator

from pynamodb.attributes import (BooleanAttribute, ListAttribute, MapAttribute, NumberAttribute,
                                 UnicodeAttribute, UnicodeSetAttribute)
from pynamodb.connection import Connection as PynamoConnection
from pynamodb.exceptions import DeleteError, PutError, UpdateError
from pynamodb.expressions.condition import size
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from .config import settings

_S = settings()


def condition_failed(exc: Exception) -> bool:
    """True when a pynamodb write error is a failed ConditionExpression (not throttling etc.)."""
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


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
    # The OAuth client id of the web page at this IdP (GET /auth/discovery); None -> ``audience``.
    web_client_id = UnicodeAttribute(null=True)
    email_claim = UnicodeAttribute(default="email")
    roles_claim = UnicodeAttribute(default="roles")
    subject_claim = UnicodeAttribute(default="sub")  # the claim that carries our user id (docs/scim.md)
    algorithms = ListAttribute(of=UnicodeAttribute, default=lambda: ["RS256", "ES256"])
    # Create a member record on first sign-in of an unknown user of this tenant.
    auto_provision = BooleanAttribute(default=False)
    status = UnicodeAttribute(default="active")
    # External-access policy, set by the tenant's admins (chalicelib/policy.py reads it):
    # {"mode": off|all|partners|users, "partners": [...], "users": [...], "groups": [...],
    #  "timezone": "Europe/Berlin", "windows": [{"days": [0..6], "start": "HH:MM", "end": "HH:MM"}],
    #  "windowMode": "inside"|"outside"}
    external = MapAttribute(null=True)
    # Directory sync (docs/scim.md): the IdP's role values (lower-cased) -> admin | member | guest | reviewer;
    # a role neither in it nor one of ours maps to member.  Set with tools/tenantctl.py scim-roles.
    scim_role_map = MapAttribute(null=True)
    # Usage limits set by ops (tools/tenantctl.py limits; chalicelib/limits.py reads them, cached):
    # {"devicesPerUser", "connectsPerSecond", "sendsPerSecondUser", "sendsPerSecondTenant"}; absent = default.
    limits = MapAttribute(null=True)
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
        except PutError as exc:
            if condition_failed(exc):
                return False
            raise


class TenantLink(Model):
    """One side's view of a connection between two tenants (two items per pair).

    ``state`` is ``invited`` (we asked), ``pending`` (they asked us), ``active``
    (both approved), ``declined`` or ``revoked``.  Each side keeps its own
    toggles; what crosses needs both sides' consent.
    """

    class Meta(_Meta):
        table_name = _S.links_table

    tenant_id = UnicodeAttribute(hash_key=True)
    peer_tenant_id = UnicodeAttribute(range_key=True)
    state = UnicodeAttribute()
    presence = BooleanAttribute(default=True)  # show our users' presence to the peer
    files = BooleanAttribute(default=True)  # allow file sharing with the peer
    who_may_start = UnicodeAttribute(default="everyone")  # everyone | admins
    updated_at = NumberAttribute(default=0)
    revoked_at = NumberAttribute(null=True)

    @classmethod
    def pair(cls, a: str, b: str) -> tuple["TenantLink | None", "TenantLink | None"]:
        """BatchGetItem: both sides of the a-b connection in 1 request."""
        got = {(x.tenant_id, x.peer_tenant_id): x for x in cls.batch_get([(a, b), (b, a)])}
        return got.get((a, b)), got.get((b, a))

    @classmethod
    def of_tenant(cls, tenant_id: str) -> list["TenantLink"]:
        """Query: 1 request per page."""
        return list(cls.query(tenant_id))


class AuditEntry(Model):
    """Append-only record of an admin action (no route updates or deletes these)."""

    class Meta(_Meta):
        table_name = _S.audit_table

    tenant_id = UnicodeAttribute(hash_key=True)
    entry_id = UnicodeAttribute(range_key=True)  # "<ms, 13 digits>#<uuid>": ordered by time
    at = NumberAttribute()
    actor = UnicodeAttribute()
    action = UnicodeAttribute()
    target = UnicodeAttribute(null=True)
    before = MapAttribute(null=True)
    after = MapAttribute(null=True)
    source_ip = UnicodeAttribute(null=True)
    request_id = UnicodeAttribute(null=True)


# --- users -------------------------------------------------------------------

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


# --- connections -------------------------------------------------------------

def user_key(tenant_id: str, user_id: str) -> str:
    """The key naming a user of a tenant everywhere a model stores one: ``<tenant>#<user>``."""
    return f"{tenant_id}#{user_id}"


def split_user_key(key: str) -> tuple[str, str]:
    """``user_key``'s inverse: (tenant id, user id)."""
    tenant, _, user = key.partition("#")
    return tenant, user


def tenant_of(key: str) -> str:
    """The tenant id of a user key."""
    return key.partition("#")[0]


def user_ref(key: str) -> dict[str, str]:
    """A user key as views and events show it: ``{"tenantId", "userId"}``."""
    tenant, user = split_user_key(key)
    return {"tenantId": tenant, "userId": user}


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


class Presence(Model):
    """Per user: live connection ids, per-device activity, manual and custom status.

    Fan-out reads the ``connections`` sets with BatchGetItem, 100 users per
    request, instead of one index Query per recipient.  The item outlives the
    connections: manual status, custom status and last-seen persist while the
    user is offline.  ``published*`` remember what watchers were last told,
    for coalescing.
    """

    class Meta(_Meta):
        table_name = _S.presence_table

    user_key = UnicodeAttribute(hash_key=True)
    connections = UnicodeSetAttribute(default=set)
    activity = MapAttribute(default=dict)  # connection id -> last activity (ms); 0 = device idle
    manual = UnicodeAttribute(null=True)  # busy | do_not_disturb | in_meeting | away
    manual_until = NumberAttribute(null=True)
    custom_text = UnicodeAttribute(null=True)
    custom_emoji = UnicodeAttribute(null=True)
    custom_expires_at = NumberAttribute(null=True)
    last_seen_at = NumberAttribute(default=0)
    published = UnicodeAttribute(null=True)  # signature of the last state sent to watchers
    published_at = NumberAttribute(default=0)
    flush_due_at = NumberAttribute(default=0)  # a delayed publish is queued for this time
    updated_at = NumberAttribute(default=0)
    # Large conversations (with an online roster, see ``OnlineEntry``) the user is a member of:
    # returned by the connect/disconnect update itself, so keeping rosters costs no read.
    rooms = UnicodeSetAttribute(null=True)
    # Expert topics whose pool the user is (or was) in (h-experts2, docs/experts.md): read with the
    # item publish() already reads, so presence changes of people in no pool cost nothing more.
    expert_topics = UnicodeSetAttribute(null=True)

    @classmethod
    def find(cls, key: str) -> "Presence | None":
        try:
            return cls.get(key, consistent_read=True)
        except cls.DoesNotExist:
            return None

    @classmethod
    def add_connection(cls, key: str, connection_id: str, now: int, max_devices: int | None = None) -> set[str] | None:
        """UpdateItem: ADD to the live set, mark the device active (1 request); returns ``rooms``.

        ``max_devices``: the live set must hold fewer ids than this (the user's device limit), in the
        same conditional update; None (nothing written) when it is full.  Only a refused or a first
        ever connection pays a consistent GetItem, to tell the two apart.
        """
        item = cls(user_key=key)
        room = (cls.connections.does_not_exist() | (size(cls.connections) < max_devices)) \
            if max_devices is not None else None
        exists = cls.user_key.exists()
        try:
            item.update(actions=[cls.connections.add({connection_id}), cls.activity[connection_id].set(now),
                                 cls.last_seen_at.set(now), cls.updated_at.set(now)],
                        condition=exists & room if room is not None else exists)
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            if room is not None and cls.find(key) is not None:
                return None  # the item exists: the live set is full
            # First connection ever: the activity map must exist before a path under it is set.
            item.update(actions=[cls.connections.add({connection_id}), cls.activity.set({connection_id: now}),
                                 cls.last_seen_at.set(now), cls.updated_at.set(now)],
                        condition=room)
        return set(item.rooms or ())

    @classmethod
    def remove_connection(cls, key: str, connection_id: str, now: int) -> set[str]:
        """UpdateItem: DELETE from the live set and its activity entry (1 request); returns ``rooms``."""
        item = cls(user_key=key)
        try:
            item.update(
                actions=[cls.connections.delete({connection_id}), cls.activity[connection_id].remove(),
                         cls.last_seen_at.set(now), cls.updated_at.set(now)],
                condition=cls.user_key.exists())
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            return set()
        return set(item.rooms or ())

    @classmethod
    def join_room(cls, key: str, conversation_id: str) -> set[str]:
        """UpdateItem: ADD a large conversation to ``rooms`` (1 request); returns the live connections."""
        item = cls(user_key=key)
        # (the activity map is created with the item, so a later connect can set a path under it)
        item.update(actions=[cls.rooms.add({conversation_id}), cls.activity.set(cls.activity | {})])
        return set(item.connections or ())

    @classmethod
    def leave_room(cls, key: str, conversation_id: str) -> set[str]:
        """UpdateItem: DELETE a conversation from ``rooms`` (1 request); returns the live connections."""
        item = cls(user_key=key)
        try:
            item.update(actions=[cls.rooms.delete({conversation_id})], condition=cls.user_key.exists())
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
            return set()
        return set(item.connections or ())

    @classmethod
    def connections_of(cls, keys: list[str]) -> dict[str, set[str]]:
        """BatchGetItem in pages of 100: user key -> live connection ids (online users only)."""
        out: dict[str, set[str]] = {}
        unique = list(dict.fromkeys(keys))
        for item in cls.batch_get(unique, attributes_to_get=["user_key", "connections"]):
            if item.connections:
                out[item.user_key] = set(item.connections)
        return out

    @classmethod
    def many(cls, keys: list[str]) -> dict[str, "Presence"]:
        """BatchGetItem in pages of 100: the whole presence item of each user."""
        return {item.user_key: item for item in cls.batch_get(list(dict.fromkeys(keys)))}


class SubscriptionsByWatcher(GlobalSecondaryIndex["Subscription"]):
    """What one connection watches (to unsubscribe / clean up on disconnect)."""

    class Meta:
        index_name = "by_watcher"
        projection = KeysOnlyProjection()

    watcher_connection = UnicodeAttribute(hash_key=True)
    watched_key = UnicodeAttribute(range_key=True)


class Subscription(Model):
    """Connection ``watcher_connection`` wants ``presence.changed`` of ``watched_key``.

    Written at ``presence.subscribe`` for the roster it may see; a presence
    change Queries these by the watched user, so its cost follows the number
    of online watchers, nothing else.  TTL ends them with the connection.
    """

    class Meta(_Meta):
        table_name = _S.subscriptions_table

    watched_key = UnicodeAttribute(hash_key=True)
    watcher_connection = UnicodeAttribute(range_key=True)
    watcher_key = UnicodeAttribute()
    expires_at = NumberAttribute()

    by_watcher = SubscriptionsByWatcher()

    @classmethod
    def watchers(cls, watched_key: str) -> list["Subscription"]:
        """Query: 1 request per page."""
        return list(cls.query(watched_key))

    @classmethod
    def replace_for(cls, connection_id: str, watcher_key: str, keys: list[str], expires_at: int) -> None:
        """BatchWriteItem (25 per request): this connection now watches exactly ``keys``."""
        cls.drop_connection(connection_id)
        with cls.batch_write() as batch:
            for key in keys:
                batch.save(cls(watched_key=key, watcher_connection=connection_id, watcher_key=watcher_key,
                               expires_at=expires_at))

    @classmethod
    def drop_connection(cls, connection_id: str) -> int:
        """Query by_watcher + BatchWriteItem deletes."""
        found = list(cls.by_watcher.query(connection_id))
        with cls.batch_write() as batch:
            for sub in found:
                batch.delete(cls(watched_key=sub.watched_key, watcher_connection=connection_id))
        return len(found)


# --- conversations -----------------------------------------------------------

class PublicChannels(GlobalSecondaryIndex["Conversation"]):
    """Sparse: public channels of a tenant, by name (only they carry ``public_tenant``)."""

    class Meta:
        index_name = "public_channels"
        projection = AllProjection()

    public_tenant = UnicodeAttribute(hash_key=True)
    name_lower = UnicodeAttribute(range_key=True)


class Conversation(Model):
    """A direct conversation, group or channel; also holds the per-conversation seq counter.

    ``last_seq`` is advanced by the same transaction that writes the message,
    under a condition on its previous value, so seqs are gap-free.
    """

    class Meta(_Meta):
        table_name = _S.conversations_table

    conversation_id = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    kind = UnicodeAttribute()  # direct | group | channel
    name = UnicodeAttribute(null=True)
    name_lower = UnicodeAttribute(null=True)
    topic = UnicodeAttribute(null=True)
    visibility = UnicodeAttribute(default="private")  # public | private (channels)
    public_tenant = UnicodeAttribute(null=True)
    created_by = UnicodeAttribute()
    created_at = NumberAttribute()
    archived = BooleanAttribute(default=False)
    receipts = BooleanAttribute(default=True)
    member_count = NumberAttribute(default=0)
    last_seq = NumberAttribute(default=0)
    last_activity_at = NumberAttribute(default=0)
    last_preview = MapAttribute(null=True)
    # Tenants whose users are members; more than one makes the conversation external.
    tenants = UnicodeSetAttribute(null=True)
    # Online roster (``OnlineEntry``) of a large conversation: absent, "building" (being filled
    # from the member list; events still resolve through members) or "ready" (events resolve
    # through the roster, never reading every membership).  See docs/delivery.md.
    roster = UnicodeAttribute(null=True)

    public_channels = PublicChannels()

    @classmethod
    def find(cls, conversation_id: str, consistent: bool = False) -> "Conversation | None":
        """GetItem: 1 request."""
        try:
            return cls.get(conversation_id, consistent_read=consistent)
        except cls.DoesNotExist:
            return None


class MembersByUser(GlobalSecondaryIndex["Member"]):
    """A user's conversations (inbox)."""

    class Meta:
        index_name = "by_user"
        projection = AllProjection()

    user_key = UnicodeAttribute(hash_key=True)
    conversation_id = UnicodeAttribute(range_key=True)


class Member(Model):
    """Membership of one user (of any tenant) in one conversation, with the read marker."""

    class Meta(_Meta):
        table_name = _S.members_table

    conversation_id = UnicodeAttribute(hash_key=True)
    user_key = UnicodeAttribute(range_key=True)  # "<tenant>#<user>"
    tenant_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    role = UnicodeAttribute(default="member")  # owner | admin | member
    joined_at = NumberAttribute()
    last_read_seq = NumberAttribute(default=0)

    by_user = MembersByUser()

    @classmethod
    def find(cls, conversation_id: str, key: str) -> "Member | None":
        """GetItem: 1 request."""
        try:
            return cls.get(conversation_id, key)
        except cls.DoesNotExist:
            return None

    @classmethod
    def of_conversation(cls, conversation_id: str) -> Iterator["Member"]:
        """Query: 1 request per 1 MB page (~thousands of members)."""
        return cls.query(conversation_id)

    @classmethod
    def of_user(cls, key: str) -> Iterator["Member"]:
        """Query by_user: 1 request per page."""
        return cls.by_user.query(key)


class MessagesByThread(GlobalSecondaryIndex["Message"]):
    """Sparse: replies of one thread in order (only replies carry ``thread_key``)."""

    class Meta:
        index_name = "by_thread"
        projection = AllProjection()

    thread_key = UnicodeAttribute(hash_key=True)  # "<conversation>#<root seq>"
    seq = NumberAttribute(range_key=True)


class MessagesByRetainedSender(GlobalSecondaryIndex["Message"]):
    """Sparse: messages under retention, by sender and time (only they carry ``retained_sender``).

    A legal hold on a user finds exactly the messages that user sent - in any
    conversation, also ones they left - to take the expiry off and put it back
    (docs/compliance.md).  Messages of tenants without retention never enter it.
    """

    class Meta:
        index_name = "by_retained_sender"
        projection = IncludeProjection(["retain_s"])  # + keys and created_at: enough to recompute the expiry

    retained_sender = UnicodeAttribute(hash_key=True)  # = sender_key
    created_at = NumberAttribute(range_key=True)


class Message(Model):
    """One message at its seq. Deleting leaves a tombstone: the seq and metadata stay.

    Retention (docs/compliance.md): ``expires_at`` is the DynamoDB TTL, set at
    write time from the sender's company's retention unless a legal hold covers
    the message; ``retain_s`` remembers the period so a released hold can put
    the expiry back.  An expired message leaves a gap in the seqs that history
    and sync render as ``{seq, deleted: true, reason: "retention"}``.
    """

    class Meta(_Meta):
        table_name = _S.messages_table

    conversation_id = UnicodeAttribute(hash_key=True)
    seq = NumberAttribute(range_key=True)
    message_id = UnicodeAttribute()
    client_message_id = UnicodeAttribute()
    sender_key = UnicodeAttribute()
    kind = UnicodeAttribute(default="text")
    body = UnicodeAttribute(null=True)
    created_at = NumberAttribute()
    edited_at = NumberAttribute(null=True)
    deleted = BooleanAttribute(default=False)
    revisions = ListAttribute(of=MapAttribute, default=list)
    thread_root_seq = NumberAttribute(null=True)
    thread_key = UnicodeAttribute(null=True)
    reply_count = NumberAttribute(default=0)
    mentions = ListAttribute(of=UnicodeAttribute, default=list)
    mention_all = BooleanAttribute(default=False)
    # emoji (as ``reaction_key`` stores it) -> string set of user keys; read through ``reaction_sets``
    reactions = MapAttribute(default=dict)
    file = MapAttribute(null=True)  # kind "file": {fileId, name, size, contentType, uploader}
    expires_at = NumberAttribute(null=True)  # TTL (epoch seconds); absent: kept (no retention, or held)
    retain_s = NumberAttribute(null=True)  # the retention period (seconds) this message was written under
    retained_sender = UnicodeAttribute(null=True)  # = sender_key when retain_s is set (sparse index)
    # How many HeldOriginal items a legal hold kept of this message (edits/delete while held); absent: none,
    # so an export Queries the originals table only for pages that have some.
    held_versions = NumberAttribute(null=True)

    by_thread = MessagesByThread()
    by_retained_sender = MessagesByRetainedSender()

    # A document path cannot name a map key containing "[" or "]" (pynamodb reads "x[0]" as a list
    # index and refuses "a[b"), so those characters (and the escape itself) are %-encoded in keys.
    _REACTION_ESCAPES = (("%", "%25"), ("[", "%5B"), ("]", "%5D"))

    @classmethod
    def reaction_key(cls, emoji: str) -> str:
        for char, escaped in cls._REACTION_ESCAPES:
            emoji = emoji.replace(char, escaped)
        return emoji

    @classmethod
    def reaction_path(cls, emoji: str) -> Any:
        """The document path of one emoji's set of user keys (for ADD/DELETE updates)."""
        return cls.reactions[cls.reaction_key(emoji)]

    def reaction_sets(self) -> dict[str, set[str]]:
        """emoji -> user keys, keys decoded (a key stored before the encoding reads as itself)."""
        raw = self.reactions.as_dict() if self.reactions else {}
        out = {}
        for key, users in raw.items():
            for char, escaped in reversed(self._REACTION_ESCAPES):
                key = key.replace(escaped, char)
            out[key] = set(users or ())
        return out

    @classmethod
    def find(cls, conversation_id: str, seq: int) -> "Message | None":
        try:
            return cls.get(conversation_id, seq)
        except cls.DoesNotExist:
            return None

    @classmethod
    def page(cls, conversation_id: str, *, before: int | None = None, after: int | None = None,
             limit: int = 50, newest_first: bool = True, consistent: bool = False) -> list["Message"]:
        """Query on the seq range: 1 request (``consistent``: strongly consistent, twice the read units)."""
        cond = None
        if before is not None and after is not None:
            cond = cls.seq.between(after + 1, before - 1)
        elif before is not None:
            cond = cls.seq < before
        elif after is not None:
            cond = cls.seq > after
        return list(cls.query(conversation_id, range_key_condition=cond, limit=limit,
                              scan_index_forward=not newest_first, consistent_read=consistent))

    @classmethod
    def thread(cls, conversation_id: str, root_seq: int, after: int = 0, limit: int = 50) -> list["Message"]:
        """Query by_thread: 1 request."""
        return list(cls.by_thread.query(f"{conversation_id}#{root_seq}", cls.seq > after, limit=limit))


class Idempotency(Model):
    """``clientMessageId`` of a sender in a conversation -> the seq it got (kept 7 days)."""

    class Meta(_Meta):
        table_name = _S.idempotency_table

    key = UnicodeAttribute(hash_key=True)
    seq = NumberAttribute()
    expires_at = NumberAttribute()

    @staticmethod
    def key_for(conversation_id: str, sender_key: str, client_message_id: str) -> str:
        return f"{conversation_id}#{sender_key}#{client_message_id}"

    @classmethod
    def find(cls, key: str) -> "Idempotency | None":
        try:
            return cls.get(key, consistent_read=True)
        except cls.DoesNotExist:
            return None


class RateCounter(Model):
    """Fixed-window counters shared by all containers (processes share nothing else)."""

    class Meta(_Meta):
        table_name = _S.ratelimits_table

    key = UnicodeAttribute(hash_key=True)
    count = NumberAttribute(default=0)
    expires_at = NumberAttribute()

    @classmethod
    def hit(cls, key: str, expires_at: int) -> int:
        """UpdateItem ADD: 1 request; returns the count in this window."""
        item = cls(key=key)
        item.update(actions=[cls.count.add(1), cls.expires_at.set(expires_at)])
        return int(item.count)

    @classmethod
    def under(cls, limit: int) -> Any:
        """The condition of taking one from a window of ``limit``."""
        return cls.count.does_not_exist() | (cls.count < limit)

    @classmethod
    def take(cls, key: str, expires_at: int, limit: int) -> bool:
        """One conditional UpdateItem: ADD 1 under ``count < limit``; False if the window is full."""
        try:
            cls(key=key).update(actions=[cls.count.add(1), cls.expires_at.set(expires_at)],
                                condition=cls.under(limit))
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise
        return True


# --- files -------------------------------------------------------------------

class File(Model):
    """One uploaded file: what the uploader declared, where the object is, and its scan state.

    ``status``: ``pending`` (upload URL issued, not yet scanned), ``clean``
    (scanned; downloadable; ``seq`` is its notice message), ``quarantined``
    (object moved under ``quarantine/``), ``deleted`` (its message was
    deleted and the object with it) or ``expired`` (no upload arrived before
    the form expired; the quota reservation was given back).  ``expires_at`` (TTL) is set on every
    state but ``clean``, so abandoned and rejected records go away by themselves.
    """

    class Meta(_Meta):
        table_name = _S.files_table

    file_id = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    conversation_id = UnicodeAttribute()
    uploader_key = UnicodeAttribute()  # "<tenant>#<user>"
    name = UnicodeAttribute()
    object_key = UnicodeAttribute()  # "<tenant>/<conversation>/<file id>/<safe name>"
    size = NumberAttribute()
    content_type = UnicodeAttribute()
    sha256 = UnicodeAttribute(null=True)  # declared by the uploader (hex), checked at scan time
    status = UnicodeAttribute(default="pending")
    reason = UnicodeAttribute(null=True)  # why quarantined or rejected
    seq = NumberAttribute(null=True)
    # The object version that was scanned: downloads are pinned to it, so an overwrite through a
    # still-valid upload URL is never served (the bucket is versioned).
    version_id = UnicodeAttribute(null=True)
    scan_attempts = NumberAttribute(default=0)
    # Set (conditionally on ``pending``) when the object's ObjectCreated event arrives: a pending record
    # without it at the upload form's expiry + grace is ``expired`` and its reservation released, once.
    uploaded_at = NumberAttribute(null=True)
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    expires_at = NumberAttribute(null=True)
    # Its message was deleted while a legal hold covered it: the scanned version is kept (S3 Object Lock
    # legal hold ON), downloadable by the company's admins only, until the last hold ends (docs/compliance.md).
    held_at = NumberAttribute(null=True)
    # Set (conditionally, once) when the bytes went back to the tenant's quota because a retention expiry
    # was set on the file (the bytes are committed to go); removed, with the bytes charged again, when a
    # retention change to "keep forever" takes the expiry away (docs/files.md "Quota").
    quota_returned = NumberAttribute(null=True)

    @classmethod
    def find(cls, file_id: str, consistent: bool = False) -> "File | None":
        """GetItem: 1 request."""
        try:
            return cls.get(file_id, consistent_read=consistent)
        except cls.DoesNotExist:
            return None


class TenantUsage(Model):
    """Bytes of files a tenant holds (pending + clean), against its quota.

    Reserved with a conditional ``ADD`` when an upload URL is issued, given
    back when a file is rejected or deleted.  ``quota_bytes`` overrides the
    stage's default for this tenant.
    """

    class Meta(_Meta):
        table_name = _S.usage_table

    tenant_id = UnicodeAttribute(hash_key=True)
    file_bytes = NumberAttribute(default=0)
    file_count = NumberAttribute(default=0)
    quota_bytes = NumberAttribute(null=True)

    @classmethod
    def find(cls, tenant_id: str) -> "TenantUsage | None":
        try:
            return cls.get(tenant_id, consistent_read=True)
        except cls.DoesNotExist:
            return None

    @classmethod
    def reserve(cls, tenant_id: str, size: int, quota: int) -> bool:
        """UpdateItem ADD under ``file_bytes <= quota - size``: False when over quota (1 request)."""
        limit = quota - size
        if limit < 0:
            return False
        try:
            cls(tenant_id=tenant_id).update(
                actions=[cls.file_bytes.add(size), cls.file_count.add(1)],
                condition=cls.file_bytes.does_not_exist() | (cls.file_bytes <= limit))
            return True
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise

    @classmethod
    def release(cls, tenant_id: str, size: int) -> None:
        """UpdateItem ADD of the negative size (1 request)."""
        cls(tenant_id=tenant_id).update(actions=[cls.file_bytes.add(-size), cls.file_count.add(-1)])

    @classmethod
    def charge(cls, tenant_id: str, size: int) -> None:
        """UpdateItem ADD of the size without a quota check (bytes already stored count again; 1 request)."""
        cls(tenant_id=tenant_id).update(actions=[cls.file_bytes.add(size), cls.file_count.add(1)])


ALL_MODELS = (Tenant, DomainClaim, TenantLink, AuditEntry, User, Connection, Presence, Subscription, Conversation, Member,
              Message, Idempotency, RateCounter, File, TenantUsage)

# DynamoDB TTL attribute per table (the local stack and infra/ enable these).
TTL_ATTRIBUTES = {Connection: "expires_at", Subscription: "expires_at", Idempotency: "expires_at", RateCounter: "expires_at",
                  File: "expires_at"}


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


def batch_get_across(wanted: list[tuple[type[Model], tuple[Any, ...], bool]]) -> list[Any]:
    """One BatchGetItem over several tables: ``(model, key values, consistent)`` in, items (or None) out.

    pynamodb batches one table at a time; the send path reads a conversation,
    the caller's membership and the retention rules together (1 request
    instead of 3).  At most 100 keys; unprocessed keys are asked again.
    """
    request: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    for model, key, consistent in wanted:
        table = request.setdefault(model.Meta.table_name, {"Keys": []})
        if consistent:
            table["ConsistentRead"] = True
        if (model.Meta.table_name, tuple(key)) not in seen:  # BatchGetItem refuses duplicate keys
            seen.add((model.Meta.table_name, tuple(key)))
            attrs = [model._hash_key_attribute(), model._range_key_attribute()][:len(key)]
            table["Keys"].append({a.attr_name: {a.attr_type: a.serialize(v)} for a, v in zip(attrs, key)})
    models = {m.Meta.table_name: m for m, _, _ in wanted}
    found: dict[tuple[str, tuple[Any, ...]], Any] = {}
    client = Conversation._get_connection().connection.client
    pending = request
    for attempt in range(8):
        if not pending:
            break
        resp = client.batch_get_item(RequestItems=pending)
        for table, items in resp.get("Responses", {}).items():
            model = models[table]
            names = [model._hash_key_attribute().attr_name] + (
                [model._range_key_attribute().attr_name] if model._range_key_attribute() else [])
            for raw in items:
                item = model.from_raw_data(raw)
                found[(table, tuple(getattr(item, n) for n in names))] = item
        pending = resp.get("UnprocessedKeys") or {}
        if pending:
            time.sleep(min(0.5, 0.02 * 2 ** attempt))
    if pending:
        raise RuntimeError("BatchGetItem left keys unprocessed after retries")
    return [found.get((m.Meta.table_name, tuple(_attr_python(m, key)))) for m, key, _ in wanted]


def _attr_python(model: type[Model], key: tuple[Any, ...]) -> tuple[Any, ...]:
    """Key values as the model's attributes hold them (numbers come back as int/float)."""
    attrs = [model._hash_key_attribute(), model._range_key_attribute()][:len(key)]
    return tuple(a.deserialize(a.serialize(v)) for a, v in zip(attrs, key))


_tx_connection: Any = None


def transaction() -> TransactWrite:
    """A TransactWriteItems batch over any of these tables (all-or-nothing)."""
    global _tx_connection
    if _tx_connection is None:
        _tx_connection = PynamoConnection(region=_S.region, max_retry_attempts=3)
    return TransactWrite(connection=_tx_connection)


# --- directory sync (SCIM 2.0, issue #8; docs/scim.md) ----------------------------

class DirectoryGroup(Model):
    """A directory group pushed by the tenant's IdP over SCIM.

    ``members`` holds user ids of the same tenant.  Each member's
    ``User.groups`` carries the group's display name as well, so the
    external-access policy (chalicelib/policy.py) reads it with the one
    GetItem of the user it already does.
    """

    class Meta(_Meta):
        table_name = _S.groups_table

    tenant_id = UnicodeAttribute(hash_key=True)
    group_id = UnicodeAttribute(range_key=True)
    display_name = UnicodeAttribute()
    external_id = UnicodeAttribute(null=True)
    members = UnicodeSetAttribute(default=set)
    # The IdP's members[].display, JSON {user id: display} (only members it was sent for).
    member_display = UnicodeAttribute(null=True)
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    # Expert topics naming this group (h-experts2): SCIM marks members it adds (models.mark_expert_pool).
    expert_topics = UnicodeSetAttribute(null=True)

    @classmethod
    def find(cls, tenant_id: str, group_id: str) -> "DirectoryGroup | None":
        """GetItem: 1 request."""
        try:
            return cls.get(tenant_id, group_id, consistent_read=True)
        except cls.DoesNotExist:
            return None

    @classmethod
    def of_tenant(cls, tenant_id: str) -> Iterator["DirectoryGroup"]:
        """Query on the tenant's partition: 1 request per 1 MB page."""
        return cls.query(tenant_id)


class ScimCredential(Model):
    """A tenant's SCIM bearer token, stored only as its SHA-256.

    Two kinds of item share the table: ``token#<sha256 hex>`` -> tenant (the
    lookup on every SCIM request: 1 GetItem), and ``tenant#<tenant id>`` ->
    the hash of the tenant's current token (so rotation and revocation find
    the old one).  Both change in one transaction.
    """

    class Meta(_Meta):
        table_name = _S.scim_tokens_table

    key = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    token_hash = UnicodeAttribute(null=True)  # on the tenant# item
    created_at = NumberAttribute()
    created_by = UnicodeAttribute()

    @classmethod
    def find(cls, key: str) -> "ScimCredential | None":
        """GetItem: 1 request."""
        try:
            return cls.get(key, consistent_read=True)
        except cls.DoesNotExist:
            return None


ALL_MODELS = ALL_MODELS + (DirectoryGroup, ScimCredential)


# --- compliance: retention, legal hold, export (issue #8; docs/compliance.md) --------------

class RetentionRule(Model):
    """What the write path needs to decide a message's expiry, by subject (1 BatchGetItem per send).

    ``subject`` is one of ``tenant#<tenant>`` (the company's default period),
    ``conv#<tenant>#<conversation>`` (that company's override for one
    conversation: it applies to its own members' messages only),
    ``hold#user#<tenant>#<user>`` and ``hold#conv#<tenant>#<conversation>``
    (the ids of the active legal holds covering them; the item is deleted
    when the last one is released).  ``days`` null = keep forever.
    ``backfill#<tenant>`` is no rule: the state of the company's retention
    backfill (``bf_*``; the newest change's ``bf_gen`` supersedes older steps,
    ``lease`` lets one step run at a time); the write path never reads it.
    """

    class Meta(_Meta):
        table_name = _S.retention_table

    subject = UnicodeAttribute(hash_key=True)
    days = NumberAttribute(null=True)
    holds = UnicodeSetAttribute(null=True)
    updated_at = NumberAttribute(default=0)
    updated_by = UnicodeAttribute(null=True)
    # backfill#<tenant> only
    bf_gen = UnicodeAttribute(null=True)
    bf_state = UnicodeAttribute(null=True)  # running | done
    bf_scope = UnicodeSetAttribute(null=True)  # conversation ids; absent = every conversation of the company
    bf_processed = NumberAttribute(null=True)  # messages whose expiry was recomputed
    bf_started_at = NumberAttribute(null=True)
    bf_finished_at = NumberAttribute(null=True)
    lease = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)


class LegalHold(Model):
    """One legal hold of a company on one of its users or on a conversation its members are in.

    ``state``: ``active`` or ``released``; ``sweep``: ``pending`` -> ``done``
    for the asynchronous pass that takes the expiry off (or puts it back on)
    the messages already written, with ``swept`` counting the items touched.
    """

    class Meta(_Meta):
        table_name = _S.holds_table

    tenant_id = UnicodeAttribute(hash_key=True)
    hold_id = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()  # user | conversation
    target = UnicodeAttribute()  # user id | conversation id
    name = UnicodeAttribute(null=True)
    state = UnicodeAttribute(default="active")
    created_at = NumberAttribute()
    created_by = UnicodeAttribute()
    released_at = NumberAttribute(null=True)
    released_by = UnicodeAttribute(null=True)
    sweep = UnicodeAttribute(default="pending")
    swept = NumberAttribute(default=0)
    # The current sweep (a new one starts on place and on release; an older one stops) and the lease
    # that keeps two steps of this hold's sweeps from running at once (services/compliance.py).
    sweep_gen = UnicodeAttribute(null=True)
    lease = UnicodeAttribute(null=True)
    lease_until = NumberAttribute(null=True)


class Export(Model):
    """An eDiscovery export job: its scope, where it is, and what it has written so far.

    The job runs in steps (one SQS message each); ``step`` orders them and
    makes a redelivered step a no-op.  ``plan`` is the list of conversation
    ids, ``position``/``before_seq`` the cursor in it, ``parts`` the
    multipart upload's finished parts.
    """

    class Meta(_Meta):
        table_name = _S.exports_table

    tenant_id = UnicodeAttribute(hash_key=True)
    export_id = UnicodeAttribute(range_key=True)
    state = UnicodeAttribute(default="queued")  # queued | running | done | failed
    created_at = NumberAttribute()
    created_by = UnicodeAttribute()
    from_ms = NumberAttribute()
    to_ms = NumberAttribute()
    user_ids = ListAttribute(of=UnicodeAttribute, null=True)
    conversation_ids = ListAttribute(of=UnicodeAttribute, null=True)
    plan = ListAttribute(of=UnicodeAttribute, null=True)  # the current chunk of conversation ids
    position = NumberAttribute(default=0)  # index in ``plan``
    listing = UnicodeAttribute(null=True)  # JSON: where the conversation listing goes on (None: not begun)
    listed = NumberAttribute(null=True)  # conversations listed so far (every chunk)
    chunk_base = NumberAttribute(null=True)  # conversations done in the chunks before ``plan``
    listing_done = BooleanAttribute(null=True)
    before_seq = NumberAttribute(null=True)
    newer_at = NumberAttribute(null=True)  # created_at of the message at before_seq (gap tombstones)
    step = NumberAttribute(default=0)
    object_key = UnicodeAttribute()
    upload_id = UnicodeAttribute(null=True)
    parts = ListAttribute(of=MapAttribute, default=list)
    counts = MapAttribute(default=dict)  # conversations, messages, files, tombstones, bytes
    error = UnicodeAttribute(null=True)
    updated_at = NumberAttribute(default=0)
    finished_at = NumberAttribute(null=True)


class OriginalsBySender(GlobalSecondaryIndex["HeldOriginal"]):
    """A user hold's sweep finds what it kept of that user's messages, in any conversation."""

    class Meta:
        index_name = "by_sender"
        projection = IncludeProjection(["seq", "created_at", "retain_s", "kind", "file_id", "tenant_id"])

    sender_key = UnicodeAttribute(hash_key=True)
    version = UnicodeAttribute(range_key=True)


class HeldOriginal(Model):
    """One version of a message that a legal hold kept when it was edited or deleted (docs/compliance.md).

    Written in the same TransactWriteItems as the edit or delete, only while a
    hold of the sender's company covers the message (custodian hold on the
    sender, or a hold on the conversation).  One item per replaced version, so
    items stay small (a body <= 8 KB; a ``deleted`` item also snapshots the
    message's last <= 20 revisions: < 200 KB) however often a held message is
    edited.  ``expires_at`` (TTL) is absent while a hold covers it; when the
    last one ends, the sweep gives it the message's expiry (or removes it, for
    a company without retention).
    """

    class Meta(_Meta):
        table_name = _S.originals_table

    conversation_id = UnicodeAttribute(hash_key=True)
    version = UnicodeAttribute(range_key=True)  # "<seq:012>#<replaced_at:013>#<hex6>": per message, in time order
    seq = NumberAttribute()
    message_id = UnicodeAttribute()
    sender_key = UnicodeAttribute()
    tenant_id = UnicodeAttribute()  # the sender's company: whose holds keep it
    kind = UnicodeAttribute()  # edited | deleted: what replaced this version
    body = UnicodeAttribute(null=True)
    at = NumberAttribute()  # when this version became current (written or edited)
    replaced_at = NumberAttribute()  # when the edit or delete replaced it
    revisions = ListAttribute(of=MapAttribute, null=True)  # deleted: the message's revisions as they were
    file_id = UnicodeAttribute(null=True)  # deleted file notice: its File record (the kept object version)
    created_at = NumberAttribute()  # the message's
    retain_s = NumberAttribute(null=True)  # the message's retention period (null: the company keeps forever)
    expires_at = NumberAttribute(null=True)

    by_sender = OriginalsBySender()

    @staticmethod
    def version_of(seq: int, replaced_at: int, nonce: str) -> str:
        return f"{int(seq):012d}#{int(replaced_at):013d}#{nonce}"

    @classmethod
    def of_messages(cls, conversation_id: str, low_seq: int, high_seq: int) -> Iterator["HeldOriginal"]:
        """Query one conversation's originals of seqs ``low..high``: 1 request per 1 MB page."""
        return cls.query(conversation_id, cls.version.between(f"{int(low_seq):012d}#", f"{int(high_seq):012d}#~"))


ALL_MODELS = ALL_MODELS + (RetentionRule, LegalHold, Export, HeldOriginal)
TTL_ATTRIBUTES[Message] = "expires_at"
TTL_ATTRIBUTES[HeldOriginal] = "expires_at"


# --- compliance: screening (DLP, issue #8; docs/compliance.md "Screening (DLP)") ----------

class DlpRules(Model):
    """A company's screening rule set, replaced as a whole by its admins (1 item per tenant).

    ``rules`` is the normalized rule list as JSON text (never queried by
    field; at most 50 rules of at most ~7 KB each).  ``version`` grows by one per
    save, so a warm container that refetches an unchanged set keeps its
    compiled form, and a save may be conditioned on the version it read.
    """

    class Meta(_Meta):
        table_name = _S.dlp_rules_table

    tenant_id = UnicodeAttribute(hash_key=True)
    rules = UnicodeAttribute(default="[]")
    version = NumberAttribute(default=0)
    updated_at = NumberAttribute(default=0)
    updated_by = UnicodeAttribute(null=True)

    @classmethod
    def find(cls, tenant_id: str) -> "DlpRules | None":
        """GetItem: 1 request."""
        try:
            return cls.get(tenant_id, consistent_read=True)
        except cls.DoesNotExist:
            return None

    @classmethod
    def many(cls, tenant_ids: list[str]) -> dict[str, "DlpRules"]:
        """BatchGetItem: the rule sets of the companies in one conversation (1 request)."""
        return {item.tenant_id: item for item in cls.batch_get(list(dict.fromkeys(tenant_ids)))}


class FlagsByQueue(GlobalSecondaryIndex["DlpFlag"]):
    """The review queue: a company's entries in one state and of one kind, by time (R1)."""

    class Meta:
        index_name = "by_queue"
        projection = AllProjection()

    queue_key = UnicodeAttribute(hash_key=True)  # "<tenant>#<state>#<kind>"
    flag_id = UnicodeAttribute(range_key=True)


class FlagsByConversation(GlobalSecondaryIndex["DlpFlag"]):
    """A company's entries about one conversation, by time (R2; sparse: entries with a conversation)."""

    class Meta:
        index_name = "by_conversation"
        projection = AllProjection()

    conversation_key = UnicodeAttribute(hash_key=True)  # "<tenant>#<conversation>"
    flag_id = UnicodeAttribute(range_key=True)


class FlagsBySender(GlobalSecondaryIndex["DlpFlag"]):
    """A company's entries about one sender (its own user, or another company's in a shared conversation) (R3)."""

    class Meta:
        index_name = "by_sender"
        projection = AllProjection()

    review_sender = UnicodeAttribute(hash_key=True)  # "<tenant>#<sender tenant>#<sender user>"
    flag_id = UnicodeAttribute(range_key=True)


class DlpFlag(Model):
    """One screening hit kept for the company's reviewers: a flag rule matched, or a block
    rule of this company refused the text (``action`` = ``block``: a blocked attempt, nothing stored).

    ``flag_id`` = ``<ms:13>#<uuid hex>``: a Query on the tenant's partition
    pages by time.  ``excerpt`` is a short piece of the text around the match
    with every match masked: the sensitive value itself is never stored here.

    Review (docs/compliance.md "Review queue"): ``state`` open -> claimed ->
    resolved (claimed -> open again on release), each transition one
    conditional UpdateItem that also appends to ``history`` and moves
    ``queue_key``.  An entry written before the queue existed has no state
    (it reads as open) and none of the index keys until its first transition.
    """

    class Meta(_Meta):
        table_name = _S.dlp_flags_table

    tenant_id = UnicodeAttribute(hash_key=True)
    flag_id = UnicodeAttribute(range_key=True)
    at = NumberAttribute()
    source = UnicodeAttribute()  # message | edit | file | file_content | name | topic | reaction | status
    conversation_id = UnicodeAttribute(null=True)  # None: a custom status, or a refused conversation.create
    seq = NumberAttribute(null=True)
    message_id = UnicodeAttribute(null=True)
    file_id = UnicodeAttribute(null=True)
    sender_key = UnicodeAttribute()  # "<tenant>#<user>" (in an external conversation, maybe the other company's)
    rule_ids = ListAttribute(of=UnicodeAttribute, default=list)
    action = UnicodeAttribute()  # what happened to the text: flag (delivered as is) | redact | block (refused)
    excerpt = UnicodeAttribute(default="")
    # A blocked attempt: the conversation's last seq when it was refused (where a case's context is).
    after_seq = NumberAttribute(null=True)
    # review
    state = UnicodeAttribute(null=True)  # open | claimed | resolved (absent: open, written before the queue)
    queue_key = UnicodeAttribute(null=True)
    conversation_key = UnicodeAttribute(null=True)
    review_sender = UnicodeAttribute(null=True)
    claimed_by = UnicodeAttribute(null=True)
    claimed_at = NumberAttribute(null=True)
    resolution = UnicodeAttribute(null=True)  # dismissed | confirmed | escalated
    note = UnicodeAttribute(null=True)
    resolved_by = UnicodeAttribute(null=True)
    resolved_at = NumberAttribute(null=True)
    history = ListAttribute(of=MapAttribute, null=True)  # [{at, by, event, resolution?, note?}], oldest first

    by_queue = FlagsByQueue()
    by_conversation = FlagsByConversation()
    by_sender = FlagsBySender()

    @property
    def kind(self) -> str:
        """``block`` (a blocked attempt) or ``flag`` (stored text: flagged, maybe redacted)."""
        return "block" if self.action == "block" else "flag"

    @property
    def review_state(self) -> str:
        return self.state or "open"

    @staticmethod
    def queue_of(tenant_id: str, state: str, kind: str) -> str:
        return f"{tenant_id}#{state}#{kind}"

    def index_keys(self) -> None:
        """Fill the index keys from the entry's own fields (on write, and on a legacy entry's first transition)."""
        self.queue_key = self.queue_of(self.tenant_id, self.review_state, self.kind)
        self.conversation_key = f"{self.tenant_id}#{self.conversation_id}" if self.conversation_id else None
        self.review_sender = f"{self.tenant_id}#{self.sender_key}"

    @classmethod
    def find(cls, tenant_id: str, flag_id: str) -> "DlpFlag | None":
        """GetItem (strongly consistent): 1 request."""
        try:
            return cls.get(tenant_id, flag_id, consistent_read=True)
        except cls.DoesNotExist:
            return None

    @classmethod
    def page(cls, tenant_id: str, lower: str, upper: str, limit: int) -> list["DlpFlag"]:
        """Query on the ``flag_id`` range, newest first: 1 request."""
        return list(cls.query(tenant_id, cls.flag_id.between(lower, upper),
                              scan_index_forward=False, limit=limit))


ALL_MODELS = ALL_MODELS + (DlpRules, DlpFlag)


# --- delivery at scale: online rosters of large conversations (docs/delivery.md) ------------

class OnlineEntry(Model):
    """One live connection of a member of a large conversation: the conversation's online roster.

    Written on $connect for every conversation in the user's ``Presence.rooms``
    and deleted on $disconnect (BatchWriteItem, 25 per request), so resolving
    who is online in a conversation of 100,000 members reads only the
    online ones: 1 Query per ~1 MB page (~9,000 entries).  ``expires_at``
    (TTL) removes the entry of a connection whose $disconnect was lost.

    The sort key is ``<4 hex digits of a hash of the connection id>#<connection id>``
    (``slot_of``): entries spread evenly over the key space ``0000``..``ffff``,
    so a huge roster is read by several workers at once, each a Query on
    its own range of slots (``in_range``), rather than page after page by one.
    """

    class Meta(_Meta):
        table_name = _S.online_table

    conversation_id = UnicodeAttribute(hash_key=True)
    connection_id = UnicodeAttribute(range_key=True)  # the slot: see slot_of
    user_key = UnicodeAttribute()
    expires_at = NumberAttribute()

    SLOTS = 0x10000
    SLOT_END = "g"  # above every slot ("ffff#...")

    @staticmethod
    def slot_of(connection_id: str) -> str:
        return f"{hashlib.blake2b(connection_id.encode(), digest_size=2).hexdigest()}#{connection_id}"

    @staticmethod
    def slot_bound(position: int) -> str:
        """The sort-key bound before every slot at ``position`` (0..SLOTS): "0a3f", or SLOT_END."""
        return OnlineEntry.SLOT_END if position >= OnlineEntry.SLOTS else f"{position:04x}"

    @staticmethod
    def slot_position(sort_key: str) -> int:
        """Where ``sort_key`` sits in 0..SLOTS (an entry written before slots existed sorts as 0)."""
        try:
            return int(sort_key[:4], 16) if sort_key[4:5] == "#" else 0
        except ValueError:
            return 0

    @property
    def connection(self) -> str:
        """The connection id this entry stands for."""
        key = self.connection_id
        return key[5:] if key[4:5] == "#" else key

    @classmethod
    def add(cls, rooms: set[str], connection_id: str, user_key: str, expires_at: int) -> None:
        """One new connection in each of ``rooms`` ($connect): BatchWriteItem, 1 request per 25 rooms."""
        cls._save_all([(conv, connection_id, user_key) for conv in sorted(rooms)], expires_at)

    @classmethod
    def add_members(cls, conversation_id: str, by_user: dict[str, set[str]], expires_at: int) -> None:
        """Members' live connections in one room (a roster build, members added): 1 request per 25."""
        cls._save_all([(conversation_id, cid, key) for key, conns in by_user.items() for cid in sorted(conns)],
                      expires_at)

    @classmethod
    def _save_all(cls, entries: list[tuple[str, str, str]], expires_at: int) -> None:
        if entries:
            with cls.batch_write() as batch:
                for conv, cid, key in entries:
                    batch.save(cls(conversation_id=conv, connection_id=cls.slot_of(cid), user_key=key,
                                   expires_at=expires_at))

    @classmethod
    def remove(cls, rooms: set[str], connection_ids: set[str]) -> None:
        """BatchWriteItem: delete each (room, connection) entry (1 request per 25)."""
        if rooms and connection_ids:
            with cls.batch_write() as batch:
                for conv in sorted(rooms):
                    for cid in sorted(connection_ids):
                        batch.delete(cls(conversation_id=conv, connection_id=cls.slot_of(cid)))

    @classmethod
    def of_conversation(cls, conversation_id: str) -> Iterator["OnlineEntry"]:
        """Query: 1 request per 1 MB page of entries."""
        return cls.query(conversation_id)

    @classmethod
    def first_page(cls, conversation_id: str, page: int) -> tuple[list["OnlineEntry"], str | None]:
        """Up to ``page`` entries from the start of the roster (1 Query) and the sort key of the
        last one when there are more (None when this was all of it)."""
        result = cls.query(conversation_id, limit=page, page_size=page)
        entries = list(result)
        more = result.last_evaluated_key
        return entries, (more["connection_id"]["S"] if more and entries else None)

    @classmethod
    def in_range(cls, conversation_id: str, after: str, below: str) -> Iterator["OnlineEntry"]:
        """Entries with ``after`` < sort key < ``below``: 1 Query per 1 MB page of the range.

        ``after`` need not be an entry's key: a slot bound ("0a3f") is before every key of its slot.
        """
        for entry in cls.query(conversation_id, cls.connection_id.between(after, below)):
            if entry.connection_id != after:  # BETWEEN is inclusive; a filter may not name a key
                yield entry


ALL_MODELS = ALL_MODELS + (OnlineEntry,)
TTL_ATTRIBUTES[OnlineEntry] = "expires_at"


# --- people search (issue #18; docs/data-model.md "People search") -----------------------------

class UserSearchToken(Model):
    """One searchable word of one active user: the directory's prefix index (no Scan, no GSI).

    ``shard`` = ``<tenant_id>#<first 2 characters of the token>``, ``entry`` =
    ``<token>\\x1f<normalized display name>\\x1f<user_id>``: a Query with
    ``begins_with(entry, word)`` on ``<tenant>#<word[:2]>`` lists the users
    with a word starting with ``word`` in (token, name) order.  Tokens,
    normalization and the writes live in ``chalicelib/search_index.py``; the
    read check against the user's record in ``chalicelib/services/people.py``.
    """

    class Meta(_Meta):
        table_name = _S.user_search_table

    shard = UnicodeAttribute(hash_key=True)
    entry = UnicodeAttribute(range_key=True)
    user_id = UnicodeAttribute()

    @classmethod
    def page(cls, shard: str, lower: str, upper: str, limit: int,
             start: dict[str, Any] | None = None) -> tuple[list["UserSearchToken"], dict[str, Any] | None]:
        """Up to ``limit`` entries with ``lower <= entry <= upper`` after ``start``: 1 Query.

        Returns them and the key to continue from (None when the range is exhausted).
        """
        result = cls.query(shard, cls.entry.between(lower, upper), limit=limit, page_size=limit,
                           last_evaluated_key=start)
        items = list(result)
        return items, result.last_evaluated_key

    @classmethod
    def write(cls, puts: set[tuple[str, str, str]], deletes: set[tuple[str, str]]) -> None:
        """BatchWriteItem: 1 request per 25 puts/deletes (``(shard, entry, user_id)`` / ``(shard, entry)``)."""
        if not puts and not deletes:
            return
        with cls.batch_write() as batch:
            for shard, entry in sorted(deletes):
                batch.delete(cls(shard=shard, entry=entry))
            for shard, entry, user_id in sorted(puts):
                batch.save(cls(shard=shard, entry=entry, user_id=user_id))


ALL_MODELS = ALL_MODELS + (UserSearchToken,)


class PushDevice(Model):
    """A user's registered phone (docs/push.md), and who holds an SNS endpoint now.

    Two kinds of item, one table:

    * ``owner`` = user key, ``device_id`` = the app's device id: the device
      (platform, app, token, locale, its SNS platform endpoint ARN).  A user's
      devices are 1 Query; registering again (token rotation) replaces the item.
    * ``owner`` = ``endpoint#<endpoint ARN>``, ``device_id`` = ``-``: the claim,
      naming the user key and device id that hold the endpoint.  SNS keeps one
      endpoint per token, so when the token moves to another user (sign-out,
      another sign-in on the same phone) the previous holder's device item is
      removed at registration and never pushed to again.
    """

    class Meta(_Meta):
        table_name = _S.push_devices_table

    owner = UnicodeAttribute(hash_key=True)
    device_id = UnicodeAttribute(range_key=True)
    platform = UnicodeAttribute(null=True)   # apns | apns_sandbox | fcm
    app_id = UnicodeAttribute(null=True)
    token = UnicodeAttribute(null=True)
    locale = UnicodeAttribute(null=True)
    endpoint_arn = UnicodeAttribute(null=True)
    holder = UnicodeAttribute(null=True)     # claim items: "<user key>\x1f<device id>"
    updated_at = NumberAttribute(default=0)

    CLAIM = "-"

    @staticmethod
    def claim_key(endpoint_arn: str) -> str:
        return f"endpoint#{endpoint_arn}"

    @classmethod
    def of_user(cls, key: str) -> list["PushDevice"]:
        """1 Query (a user has a handful of devices)."""
        return list(cls.query(key))

    @classmethod
    def find(cls, key: str, device_id: str) -> "PushDevice | None":
        try:
            return cls.get(key, device_id, consistent_read=True)
        except cls.DoesNotExist:
            return None


ALL_MODELS = ALL_MODELS + (PushDevice,)


# --- ask the experts (issue #20, docs/experts.md) --------------------------------------------

class ExpertItem(Model):
    """A company's expert topics and the questions asked on them: one table, one partition per company.

    * ``item_id`` = ``t#<topicId>``: a topic (name, tiers of named users and directory groups as
      JSON, wave size, timeout).  A company's topics are 1 Query (``begins_with t#``).
    * ``item_id`` = ``q#<questionId>`` with ``questionId`` = ``<topicId>.<ms, 13 digits>.<hex>``:
      a question.  A topic's queue is 1 Query (``begins_with q#<topicId>.``), oldest first.
      ``offered`` holds the experts it was offered to; ``wave`` the escalation step it is at (a
      delayed job for an older step is stale); ``state`` ``open`` -> ``accepted`` by one conditional
      UpdateItem (of concurrent accepts exactly one wins).
    """

    class Meta(_Meta):
        table_name = _S.experts_table

    tenant_id = UnicodeAttribute(hash_key=True)
    item_id = UnicodeAttribute(range_key=True)
    # topic
    name = UnicodeAttribute(null=True)
    tiers = UnicodeAttribute(null=True)  # JSON [{"users": [...], "groups": [...]}, ...]
    wave_size = NumberAttribute(null=True)
    timeout_seconds = NumberAttribute(null=True)
    created_by = UnicodeAttribute(null=True)
    created_at = NumberAttribute(default=0)
    updated_at = NumberAttribute(default=0)
    # question
    topic_id = UnicodeAttribute(null=True)
    asker = UnicodeAttribute(null=True)  # user id (same company)
    text = UnicodeAttribute(null=True)
    state = UnicodeAttribute(null=True)  # open | accepted
    exhausted = BooleanAttribute(null=True)  # every reachable expert was offered; waits in the queue
    tier = NumberAttribute(null=True)
    wave = NumberAttribute(null=True)
    offered = UnicodeSetAttribute(null=True)
    accepted_by = UnicodeAttribute(null=True)
    accepted_at = NumberAttribute(null=True)
    conversation_id = UnicodeAttribute(null=True)
    # h-experts2: the experts of the latest wave, those who declined, when it was cancelled; a
    # waiting marker (``w#<questionId>``) also keeps the asker's display name for the queue's list.
    wave_members = UnicodeSetAttribute(null=True)
    declined = UnicodeSetAttribute(null=True)
    cancelled_at = NumberAttribute(null=True)
    asked_by = UnicodeAttribute(null=True)
    # h-experts2, Q&A entries (``a#<questionId>``) and their words (``k#...``): the kept answer, the
    # expert's messages it came from (JSON [seq, ...]), when; TTL = the earliest expiry of those messages.
    answer = UnicodeAttribute(null=True)
    answer_seqs = UnicodeAttribute(null=True)
    answered_at = NumberAttribute(null=True)
    expert_name = UnicodeAttribute(null=True)  # the answering expert's display name, as it was
    # h-experts2, shared topics: the host's consent (topic: peer tenant ids); a question's asker of a
    # partner company; a partner's consent item ``s#<hostTenant>#<topicId>`` names its host.
    shared_with = UnicodeSetAttribute(null=True)
    asker_tenant = UnicodeAttribute(null=True)
    host_tenant = UnicodeAttribute(null=True)
    expires_at = NumberAttribute(null=True)

    @staticmethod
    def topic_key(topic_id: str) -> str:
        return f"t#{topic_id}"

    @staticmethod
    def question_key(question_id: str) -> str:
        return f"q#{question_id}"

    @classmethod
    def find(cls, tenant_id: str, item_id: str) -> "ExpertItem | None":
        """GetItem (consistent): 1 request."""
        try:
            return cls.get(tenant_id, item_id, consistent_read=True)
        except cls.DoesNotExist:
            return None

    @classmethod
    def topics(cls, tenant_id: str, limit: int = 100) -> list["ExpertItem"]:
        """1 Query on the company's partition."""
        return list(cls.query(tenant_id, cls.item_id.startswith("t#"), limit=limit))

    @classmethod
    def queue(cls, tenant_id: str, topic_id: str, limit: int = 50) -> list["ExpertItem"]:
        """A topic's questions, oldest first: 1 Query."""
        return list(cls.query(tenant_id, cls.item_id.startswith(f"q#{topic_id}."), limit=limit))


ALL_MODELS = ALL_MODELS + (ExpertItem,)


# ---- experts: questions waiting, pools (h-experts2) ----

def expert_waiting_key(question_id: str) -> str:
    """The marker of a question nobody reachable took: exists while it waits (open and exhausted)."""
    return f"w#{question_id}"


def expert_waiting(tenant_id: str, topic_id: str, limit: int = 50) -> list[ExpertItem]:
    """A topic's waiting questions, oldest first: 1 Query (``begins_with w#<topicId>.``); accepted and
    cancelled questions have no marker, so the cost follows what waits, not the topic's history."""
    return list(ExpertItem.query(tenant_id, ExpertItem.item_id.startswith(f"w#{topic_id}."), limit=limit))


def mark_expert_pool(keys: list[str], topic_ids: set[str]) -> None:
    """ADD the topics to each user's ``Presence.expert_topics`` (1 UpdateItem per user; creates the item
    of a user who never connected).  A stale mark (removed from the pool) is cleared lazily when it is
    next used (services/experts.on_available)."""
    for key in dict.fromkeys(keys):
        # (the activity map is created with the item, so a later connect can set a path under it)
        Presence(user_key=key).update(actions=[Presence.expert_topics.add(set(topic_ids)),
                                               Presence.activity.set(Presence.activity | {})])


def unmark_expert_pool(key: str, topic_ids: set[str]) -> None:
    Presence(user_key=key).update(actions=[Presence.expert_topics.delete(set(topic_ids))])


# ---- experts: Q&A entries (h-experts2) ----
# ``a#<questionId>``: a topic's kept question and answer (browse: Query ``begins_with a#<topicId>.``);
# ``k#<scope>\x1f<word>\x1f<questionId>`` with scope = the topic id, or ``~`` for the whole company: the
# entry's words, found by a prefix Query (the people search's token pattern, in the company's partition).
# Both carry the entry's ``expires_at`` (TTL): they go when the first of the answer's messages expires.
TTL_ATTRIBUTES[ExpertItem] = "expires_at"
EXPERT_WORD_SEP = "\x1f"
EXPERT_ALL_TOPICS = "~"


def expert_entry_key(question_id: str) -> str:
    return f"a#{question_id}"


def expert_word_key(scope: str, word: str, question_id: str) -> str:
    return f"k#{scope}{EXPERT_WORD_SEP}{word}{EXPERT_WORD_SEP}{question_id}"


def expert_entries(tenant_id: str, topic_id: str, limit: int) -> list[ExpertItem]:
    """A topic's Q&A entries, newest first: 1 Query."""
    return list(ExpertItem.query(tenant_id, ExpertItem.item_id.startswith(f"a#{topic_id}."),
                                 scan_index_forward=False, limit=limit))


def expert_word_hits(tenant_id: str, scope: str, word: str, limit: int) -> list[str]:
    """Question ids of entries with a word starting with ``word``: 1 Query (keys only are used)."""
    prefix = f"k#{scope}{EXPERT_WORD_SEP}{word}"
    return [i.item_id.rsplit(EXPERT_WORD_SEP, 1)[1]
            for i in ExpertItem.query(tenant_id, ExpertItem.item_id.startswith(prefix), limit=limit)]


def expert_write(puts: list[ExpertItem]) -> None:
    """BatchWriteItem: 1 request per 25 items."""
    with ExpertItem.batch_write() as batch:
        for item in puts:
            batch.save(item)


# ---- experts: topics shared with a connected company (h-experts2) ----

def expert_share_key(host_tenant: str, topic_id: str) -> str:
    """The partner's consent to a host's shared topic, in the partner's partition."""
    return f"s#{host_tenant}#{topic_id}"


def expert_shares(tenant_id: str, limit: int = 100) -> list[ExpertItem]:
    """The shared topics a company accepted: 1 Query (``begins_with s#``)."""
    return list(ExpertItem.query(tenant_id, ExpertItem.item_id.startswith("s#"), limit=limit))
