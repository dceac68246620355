"""Connection lifecycle: the record that says who holds a socket (who may open one: ``authentication``)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, NamedTuple

from pynamodb.exceptions import DeleteError

from .. import limits, usage
from ..identity import Principal
from ..models import Connection, OnlineEntry, Presence, Subscription, condition_failed, tenant_of, user_key
from ..protocol.errors import Forbidden, TooManyDevices
from .authentication import authenticate

if TYPE_CHECKING:
    from ..auth import TokenVerifier


class ConnectRequest(NamedTuple):
    connection_id: str
    token: str | None
    source_ip: str | None
    device: str | None


def connect(verifier: "Callable[[], TokenVerifier]", clock: Callable[[], float], ttl_seconds: int,
            req: ConnectRequest, principal: Principal | None = None,
            alive: Callable[[str], bool] | None = None) -> Principal:
    """Write the connection record of a $connect (PutItem + the presence UpdateItem [+ rosters]).

    ``principal``: who the $connect authorizer already verified; without it the
    token is authenticated here (+ GetItem of the user) by ``verifier()``, built
    only then (with the authorizer in front, $connect never loads pyjwt).

    Limits (chalicelib/limits.py; the tenant's, cached): the tenant's connect window first (1
    conditional UpdateItem; ``rate_limited``), then the user's device limit as the condition of the
    presence update itself (free; ``too_many_devices``, and the record just written is deleted).
    ``alive``: asks the gateway whether a connection id is still open (GetConnection); when the
    live set is full its ids are checked with it first and the dead ones removed (``reap_stale``),
    so ids of sockets whose $disconnect was lost never lock a user out.
    """
    if principal is None:
        principal, _user = authenticate(verifier(), req.token)
    key = user_key(principal.tenant_id, principal.user_id)
    mine = limits.for_tenant(principal.tenant_id)
    limits.take(limits.connect_window(mine, principal.tenant_id, key, clock()))
    now = int(clock())
    Connection(
        connection_id=req.connection_id,
        tenant_id=principal.tenant_id,
        user_id=principal.user_id,
        tenant_user=key,
        email=principal.email,
        roles=list(principal.roles),
        device=(req.device or None) and req.device[:128],
        source_ip=req.source_ip,
        connected_at=now,
        expires_at=now + ttl_seconds,
    ).save()
    rooms = Presence.add_connection(key, req.connection_id, int(clock() * 1000), max_devices=mine.devices_per_user)
    if rooms is None and alive is not None and reap_stale(key, req.connection_id, alive, clock):
        rooms = Presence.add_connection(key, req.connection_id, int(clock() * 1000),
                                        max_devices=mine.devices_per_user)
    if rooms is None:
        Connection.remove(req.connection_id)
        raise TooManyDevices(mine.devices_per_user)
    OnlineEntry.add(rooms, req.connection_id, key, now + ttl_seconds)  # large conversations' rosters
    return principal


# API Gateway answers Gone to posts for a connection whose $connect has not returned yet,
# so a fan-out racing a handshake must not take Gone as death: a younger record is kept
# (its $disconnect, a later Gone or the TTL removes it if it really is dead).
GONE_GRACE_SECONDS = 30


def disconnect(connection_id: str, clock: Callable[[], float] = time.time,
               min_age_seconds: float = 0) -> Connection | None:
    """Remove the connection record and its entry in the user's live set; idempotent.

    Also the cleanup for a post that answered Gone (the socket died without
    a $disconnect reaching us): then with ``min_age_seconds=GONE_GRACE_SECONDS``,
    and a record younger than that is left alone (returns None).
    """
    conn = Connection.find(connection_id)
    if conn is not None and min_age_seconds and clock() - int(conn.connected_at or 0) < min_age_seconds:
        return None
    # The live set first, the record last: if this dies in between, the record still names the
    # user, so the next Gone or $disconnect finishes the job (the other order strands the id in
    # the live set for good: posted to on every fan-out, and the user shown online).
    if conn is not None:
        rooms = Presence.remove_connection(conn.tenant_user, connection_id, int(clock() * 1000))
        OnlineEntry.remove(rooms, {connection_id})
    Subscription.drop_connection(connection_id)
    if conn is None:
        Connection.remove(connection_id)
    elif _removed(conn):  # only the call that removed the record counts its minutes (chalicelib/usage.py)
        usage.add(tenant_of(conn.tenant_user), clock(),
                  connectionMinutes=usage.connection_minutes(int(conn.connected_at or 0), clock()))
    return conn


def _removed(conn: Connection) -> bool:
    """DeleteItem under "it is still there": False when a concurrent cleanup removed it first."""
    try:
        conn.delete(condition=Connection.connection_id.exists())
    except DeleteError as exc:
        if condition_failed(exc):
            return False
        raise
    return True


def reap_stale(key: str, connection_id: str, alive: Callable[[str], bool],
               clock: Callable[[], float] = time.time) -> int:
    """Remove the ids of the user's live set that the gateway says are gone: how many were removed.

    Run only when the device limit refuses (1 GetItem + 1 GetConnection per live id, + a
    disconnect per dead one).  An id whose record is younger than ``GONE_GRACE_SECONDS`` is kept
    (API Gateway answers Gone while its $connect still runs); an id without a record (its TTL
    removed it) is taken out of the live set directly.
    """
    item = Presence.find(key)
    removed = 0
    for cid in sorted(set(item.connections or ()) - {connection_id}) if item is not None else []:
        if alive(cid):
            continue
        conn = Connection.find(cid)
        if conn is None:
            OnlineEntry.remove(Presence.remove_connection(key, cid, int(clock() * 1000)), {cid})
            removed += 1
        elif disconnect(cid, clock, min_age_seconds=GONE_GRACE_SECONDS) is not None:
            removed += 1
    return removed


def principal_of(connection_id: str) -> Principal:
    """The principal behind a live connection (1 GetItem).

    API Gateway passes only the connection id with each frame, so the record
    written at $connect is the proof of identity for later frames.
    """
    conn = Connection.find(connection_id)
    if conn is None:
        raise Forbidden("Connection is not registered; reconnect.")
    return Principal(tenant_id=conn.tenant_id, user_id=conn.user_id, email=conn.email,
                     roles=tuple(conn.roles or ()))
