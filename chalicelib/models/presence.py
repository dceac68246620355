"""Live sockets, each user's presence item and the presence subscriptions of watchers."""
from __future__ import annotations

from typing import Iterator

from pynamodb.attributes import ListAttribute, MapAttribute, NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import size
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from .base import _Meta, _S, condition_failed, user_key


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
    # Expert topics whose pool the user is (or was) in (docs/experts.md): read with the
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
        ever connection pays a consistent GetItem, to tell the two apart.  Two first connections at
        once: one creates the item (under "absent"), the other finds it and adds itself as usual -
        a full set is decided only on the set as read, never on a lost race.
        """
        item = cls(user_key=key)
        room = (cls.connections.does_not_exist() | (size(cls.connections) < max_devices)) \
            if max_devices is not None else None
        exists = cls.user_key.exists()
        for _ in range(3):
            try:
                item.update(actions=[cls.connections.add({connection_id}), cls.activity[connection_id].set(now),
                                     cls.last_seen_at.set(now), cls.updated_at.set(now)],
                            condition=exists & room if room is not None else exists)
                return set(item.rooms or ())
            except UpdateError as exc:
                if not condition_failed(exc):
                    raise
            current = cls.find(key)
            if current is not None:
                if max_devices is not None and len(current.connections or ()) >= max_devices:
                    return None  # the live set is full
                continue  # created by a concurrent first connection (or a slot freed): add as usual
            # First connection ever: the activity map must exist before a path under it is set.
            try:
                item.update(actions=[cls.connections.add({connection_id}), cls.activity.set({connection_id: now}),
                                     cls.last_seen_at.set(now), cls.updated_at.set(now)],
                            condition=cls.user_key.does_not_exist())
                return set(item.rooms or ())
            except UpdateError as exc:
                if not condition_failed(exc):
                    raise
        raise RuntimeError(f"the live set of {key} kept changing; connect again")

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


# --- expert pools (docs/experts.md) ---

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
