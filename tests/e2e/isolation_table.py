"""The tenant-isolation matrix: every REST route and WebSocket action x the ways to be the wrong caller.

Pure data, read by ``tests/e2e/test_isolation.py`` (which plays it against
the local stack) and by ``tests/unit/test_isolation_coverage.py`` (which fails
when ``app.py`` gains a route or ``chalicelib/ws_api.py`` an action that is
not listed here).  Adding a route = adding one row.

Cases (the caller is always a real, signed-in user; see test_isolation.py):

* ``unconnected``: a user (an admin on admin routes) of another company with
  no connection to the victim's, using the victim's ids.
* ``policy``: the companies are connected and the caller is in an external
  conversation hosted by the victim's company, whose external-access policy is
  now ``off``.
* ``revoked``: the same after the connection was revoked.
* ``role``: a plain member of the victim's company (not an admin of the
  company, not an owner/admin of the conversation).
* ``guest``: a user of the victim's company with only the ``guest`` role,
  not a member of the victim's conversations.

An expectation is an error code (several allowed: ``"conflict|not_found"``),
``"ok"`` (allowed, but the reply must contain nothing the caller may not see:
no ``VICTIM-SECRET`` text and none of ``hidden``), or ``None`` with the reason
in ``why_not`` (the case does not apply).  Whatever the outcome, the victim's
stored state must not change and no victim device may receive anything
caused by the caller.

Placeholders in fields and path parameters name values of the world:
``conv`` (the victim's conversation the caller targets), ``own_conv`` (a
conversation of the caller's own company the caller owns), ``leave_conv``,
``channel`` (a public channel of the victim's company), ``file`` (a clean
file in ``conv`` uploaded by the victim), ``victim_uid``, ``victim_email``,
``other_uid`` (another victim-company member of ``conv``), ``peer`` (the
victim's tenant id), ``victim_seq`` (the victim's message), ``victim_key``
(``"<peer>#<victim_uid>"``), ``own_seq`` (the
caller's own message in ``conv``, where it has one), ``marker`` (unique text).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CASES = ("unconnected", "policy", "revoked", "role", "guest")

# Routes other helpers are adding right now, each with its own isolation tests.  Listed here
# so the coverage test tolerates them *for now*; the lead revisits this list (move each into
# REST below once its owner is done).
COVERED_ELSEWHERE_PREFIXES = (
    "/admin/dlp",        # DLP rules and flags (docs/compliance.md), own tests
    "/admin/retention",  # retention settings, own tests
    "/admin/holds",      # legal holds, own tests
    "/admin/exports",    # exports, own tests
    "/admin/scim",       # SCIM tokens, own tests
    "/scim/v2",          # SCIM 2.0 provisioning API, own tests
)
# Single routes of the same work that do not sit under those prefixes (same status: the lead revisits).
COVERED_ELSEWHERE_ROUTES = (
    "PUT /admin/conversations/{conversation_id}/retention",  # retention helper, own tests
)

NOT_TENANT_DATA = "touches no tenant data"


@dataclass(frozen=True)
class Entry:
    """One route or action and what each case must get."""

    name: str                           # ws action, or "METHOD /path" exactly as in app.py
    expect: dict[str, str | None]       # case -> "code|code" / "ok" / None
    fields: dict[str, Any] = field(default_factory=dict)   # frame fields or JSON body
    by_case: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-case field overrides
    params: dict[str, str] = field(default_factory=dict)   # REST path parameter -> world key
    hidden: tuple[str, ...] = ()        # world keys whose values an "ok" reply must not contain
    why_not: str = ""                   # why some cases do not apply

    @property
    def method(self) -> str:
        return self.name.split(" ", 1)[0]

    @property
    def path(self) -> str:
        return self.name.split(" ", 1)[1]


def _x(unconnected=None, policy=None, revoked=None, role=None, guest=None) -> dict[str, str | None]:
    return {"unconnected": unconnected, "policy": policy, "revoked": revoked, "role": role, "guest": guest}


NF, FB, EXT, CF = "not_found", "forbidden", "external_access_revoked", "conflict"
MSG = {"clientMessageId": "{marker}", "body": "ATTACK {marker}"}
UPLOAD = {"name": "attack.png", "size": 10, "contentType": "image/png"}
PUSH_DEVICE = {"deviceId": "attack-phone", "platform": "fcm", "appId": "com.example.chat", "token": "attack0token0fcm"}

WS: list[Entry] = [
    Entry("ping", _x(), why_not=NOT_TENANT_DATA),
    Entry("conversation.create", _x(NF, EXT, NF), {"kind": "direct", "memberEmails": ["{victim_email}"]},
          why_not="role/guest: starting conversations is not role-restricted"),
    Entry("conversation.get", _x(NF, "ok", "ok", None, NF), {"conversationId": "{conv}"},
          why_not="role: a member reads its conversation"),
    Entry("conversation.list", _x("ok", "ok", "ok", None, "ok"), hidden=("conv_private",),
          why_not="role: lists only the caller's own memberships"),
    Entry("conversation.update", _x(NF, FB, FB, FB, NF), {"conversationId": "{conv}", "topic": "ATTACK {marker}"}),
    Entry("conversation.join", _x(NF, NF, NF, None, FB), {"conversationId": "{channel}"},
          why_not="role: members may join their company's public channels"),
    Entry("conversation.leave", _x(NF, "ok", "ok", None, NF), {"conversationId": "{conv}"},
          by_case={"policy": {"conversationId": "{leave_conv}"}, "revoked": {"conversationId": "{leave_conv}"}},
          why_not="role: leaving is the member's own choice"),
    Entry("channel.list", _x("ok", "ok", "ok"), hidden=("channel",),
          why_not="role/guest: public channels of the own company are listed to everyone in it"),
    Entry("member.list", _x(NF, "ok", "ok", None, NF), {"conversationId": "{conv}"},
          why_not="role: a member reads its conversation"),
    Entry("member.add", _x(NF, EXT, NF, FB, NF), {"conversationId": "{own_conv}", "memberEmails": ["{victim_email}"]},
          by_case={"role": {"conversationId": "{conv}", "userIds": ["{victim_uid}"], "memberEmails": None},
                   "guest": {"conversationId": "{conv}", "userIds": ["{victim_uid}"], "memberEmails": None}}),
    Entry("member.remove", _x(NF, FB, FB, FB, NF), {"conversationId": "{conv}", "userId": "{other_uid}"}),
    Entry("member.role", _x(NF, FB, FB, FB, NF), {"conversationId": "{conv}", "userId": "{other_uid}", "role": "admin"}),
    Entry("message.send", _x(NF, EXT, EXT, None, NF), {"conversationId": "{conv}", **MSG},
          why_not="role: members write in their conversations"),
    Entry("message.edit", _x(NF, EXT, EXT, FB, NF), {"conversationId": "{conv}", "seq": "{own_seq}", "body": "ATTACK"},
          by_case={"role": {"seq": "{victim_seq}"}}),
    Entry("message.delete", _x(NF, EXT, EXT, FB, NF), {"conversationId": "{conv}", "seq": "{own_seq}"},
          by_case={"role": {"seq": "{victim_seq}"}}),
    Entry("message.revisions", _x(NF, EXT, "ok", None, NF), {"conversationId": "{conv}", "seq": "{victim_seq}"},
          why_not="role: a member reads its conversation"),
    Entry("reaction.add", _x(NF, EXT, EXT, None, NF), {"conversationId": "{conv}", "seq": "{victim_seq}", "emoji": "x"},
          why_not="role: members react in their conversations"),
    Entry("reaction.remove", _x(NF, EXT, EXT, None, NF), {"conversationId": "{conv}", "seq": "{victim_seq}", "emoji": "x"},
          why_not="role: members react in their conversations"),
    Entry("history", _x(NF, EXT, "ok", None, NF), {"conversationId": "{conv}"},
          why_not="role: a member reads its conversation"),
    Entry("thread.history", _x(NF, EXT, "ok", None, NF), {"conversationId": "{conv}", "rootSeq": "{victim_seq}"},
          why_not="role: a member reads its conversation"),
    Entry("sync", _x("ok", "ok", "ok", None, "ok"), {"conversations": [{"conversationId": "{conv}", "afterSeq": 0}]},
          why_not="role: a member reads its conversation"),
    Entry("read", _x(NF, EXT, EXT, None, NF), {"conversationId": "{conv}", "seq": "{victim_seq}"},
          why_not="role: members mark their own reading"),
    Entry("typing.start", _x(NF, EXT, EXT, None, NF), {"conversationId": "{conv}"},
          why_not="role: members type in their conversations"),
    Entry("typing.stop", _x(NF, EXT, EXT, None, NF), {"conversationId": "{conv}"},
          why_not="role: members type in their conversations"),
    Entry("presence.set", _x("ok", "ok", "ok"), {"status": "busy"},
          why_not="role/guest: own presence, shown to the own company"),
    Entry("presence.custom", _x("ok", "ok", "ok"), {"text": "ATTACK {marker}"},
          why_not="role/guest: own presence, shown to the own company"),
    Entry("presence.heartbeat", _x("ok", "ok", "ok"), {"active": False},
          why_not="role/guest: own presence, shown to the own company"),
    Entry("presence.subscribe", _x(NF, "ok", "ok", None, None), {"watch": ["{victim_uid}"]},
          by_case={"policy": {"watch": None}, "revoked": {"watch": None}}, hidden=("victim_uid",),
          why_not="role/guest: the own company's directory is visible to its members"),
    Entry("presence.unsubscribe", _x("ok"), why_not="acts on the caller's own connection only"),
    Entry("file.upload.request", _x(NF, EXT, EXT, None, NF), {"conversationId": "{conv}", **UPLOAD},
          why_not="role: members share files in their conversations"),
    Entry("file.download.request", _x(NF, EXT, EXT, None, NF), {"fileId": "{file}"},
          why_not="role: members download files of their conversations"),
    # people (users.get): another company's user is "notFound" unless connected and allowed now;
    # the reply must not carry the victim's email (the key itself is the caller's own input).
    Entry("users.get", _x("ok", "ok", "ok", None, None), {"keys": ["{victim_key}"]}, hidden=("victim_email",),
          why_not="role/guest: the own company's directory is visible to its members"),
    # people search: another company's users are found only while connected and allowed now; searching
    # by the victim's exact email must find nobody (neither its id nor its email in the reply).
    Entry("users.search", _x("ok", "ok", "ok", None, None), {"q": "{victim_email}"},
          hidden=("victim_email", "victim_uid"),
          why_not="role/guest: the own company's directory is visible to its members"),
    # mobile push: a device is stored under the caller's own user key; registering touches nothing of
    # the victim's and unregistering the victim's id (as a device id) removes nothing of theirs.
    Entry("push.register", _x("ok", "ok", "ok", "ok", "ok"), PUSH_DEVICE),
    Entry("push.unregister", _x("ok", "ok", "ok", "ok", "ok"), {"deviceId": "{victim_uid}"}, hidden=("victim_email",)),
    # push preferences: the caller's own item (never the victim's); a conversation's push level is the
    # caller's own member item, so the access check of conversation.get applies (tests/e2e/test_push.py)
    Entry("push.preferences.get", _x("ok", "ok", "ok", "ok", "ok"), hidden=("victim_email", "victim_uid")),
    Entry("push.preferences.set", _x("ok", "ok", "ok", "ok", "ok"), {"keywords": ["ATTACK {marker}"]}),
    Entry("push.conversation.set", _x(NF, "ok", "ok", None, NF), {"conversationId": "{conv}", "level": "nothing"},
          why_not="role: a member sets its own push level"),
    # ask the experts (docs/experts.md): topics and questions are looked up in the caller's company only;
    # a question is the caller's to accept only once it was offered to the caller (tests/e2e/test_experts.py)
    Entry("expert.ask", _x(NF, NF, NF, None, FB), {"topicId": "{victim_uid}", "text": "ATTACK {marker}"},
          why_not="role: any member of the company may ask on its topics"),
    Entry("expert.accept", _x(NF, NF, NF, NF, NF), {"questionId": "{victim_uid}"}),
    # only an expert it was offered to declines, only its asker cancels; a topic's queue is its pool's
    Entry("expert.decline", _x(NF, NF, NF, NF, NF), {"questionId": "{victim_uid}"}),
    Entry("expert.cancel", _x(NF, NF, NF, NF, NF), {"questionId": "{victim_uid}"}),
    Entry("expert.queue", _x(NF, NF, NF, NF, NF), {"topicId": "{victim_uid}"}),
    # the caller's own company's topics (and shared ones it accepted): nothing of the victim's
    Entry("expert.topics", _x("ok", "ok", "ok", "ok", FB), hidden=("victim_uid",)),
    # Q&A: only the asker marks answered; entries are searched in the caller's own company (guests: none)
    Entry("expert.answered", _x(NF, NF, NF, NF, NF), {"questionId": "{victim_uid}", "messageSeqs": [1]}),
    Entry("expert.search", _x(NF, NF, NF, NF, FB), {"topicId": "{victim_uid}", "q": "ATTACK {marker}"}),
]

C = {"conversation_id": "conv"}
ADMIN_ROLE = {"role": FB, "guest": FB}
REST: list[Entry] = [
    Entry("GET /health", _x(), why_not=NOT_TENANT_DATA),
    # public by design: an email domain's issuer and client id, what any login page shows (test_web.py)
    Entry("GET /auth/discovery", _x(), why_not="public sign-in discovery: no tenant data beyond a domain's issuer"),
    Entry("GET /users", _x("ok", "ok", "ok", None, None), {"q": "{victim_email}"},
          hidden=("victim_email", "victim_uid"),
          why_not="role/guest: the own company's directory is visible to its members"),
    Entry("POST /push/devices", _x("ok", "ok", "ok", "ok", "ok"), PUSH_DEVICE),
    Entry("DELETE /push/devices/{device_id}", _x("ok", "ok", "ok", "ok", "ok"), params={"device_id": "victim_uid"}),
    Entry("GET /push/preferences", _x("ok", "ok", "ok", "ok", "ok"), hidden=("victim_email", "victim_uid")),
    Entry("PUT /push/preferences", _x("ok", "ok", "ok", "ok", "ok"), {"keywords": ["ATTACK {marker}"]}),
    Entry("PUT /conversations/{conversation_id}/push", _x(NF, "ok", "ok", None, NF), {"level": "nothing"}, params=C,
          why_not="role: a member sets its own push level"),
    Entry("POST /experts/questions", _x(NF, NF, NF, None, FB), {"topicId": "{victim_uid}", "text": "ATTACK {marker}"},
          why_not="role: any member of the company may ask on its topics"),
    Entry("DELETE /experts/questions/{question_id}", _x(NF, NF, NF, NF, NF), params={"question_id": "victim_uid"}),
    Entry("POST /experts/questions/{question_id}/answered", _x(NF, NF, NF, NF, NF), {"messageSeqs": [1]},
          params={"question_id": "victim_uid"}),
    Entry("GET /experts/answers", _x(NF, NF, NF, NF, FB), {"topicId": "{victim_uid}", "q": "ATTACK"}),
    Entry("GET /experts/topics", _x("ok", "ok", "ok", "ok", FB), hidden=("victim_uid",)),
    Entry("GET /experts/topics/{topic_id}/queue", _x(NF, NF, NF, NF, NF), params={"topic_id": "victim_uid"}),
    Entry("GET /conversations", _x("ok", "ok", "ok", None, "ok"), hidden=("conv_private",),
          why_not="role: lists only the caller's own memberships"),
    Entry("GET /conversations/{conversation_id}", _x(NF, "ok", "ok", None, NF), params=C,
          why_not="role: a member reads its conversation"),
    Entry("GET /conversations/{conversation_id}/messages", _x(NF, EXT, "ok", None, NF), params=C,
          why_not="role: a member reads its conversation"),
    Entry("POST /conversations/{conversation_id}/messages", _x(NF, EXT, EXT, None, NF), MSG, params=C,
          why_not="role: members write in their conversations"),
    Entry("POST /conversations/{conversation_id}/read", _x(NF, EXT, EXT, None, NF), {"seq": "{victim_seq}"}, params=C,
          why_not="role: members mark their own reading"),
    Entry("POST /conversations/{conversation_id}/files", _x(NF, EXT, EXT, None, NF), UPLOAD, params=C,
          why_not="role: members share files in their conversations"),
    Entry("GET /files/{file_id}/download", _x(NF, EXT, EXT, None, NF), params={"file_id": "file"},
          why_not="role: members download files of their conversations"),
    # Admin routes: the caller is the other company's admin (cases unconnected/policy/revoked),
    # a plain member (role) or a guest (guest) of the victim's company.
    Entry("GET /admin/connections", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}, hidden=("victim_uid",)),
    Entry("POST /admin/connections", {**_x(None, CF, None), **ADMIN_ROLE}, {"tenantId": "{peer}"},
          why_not="unconnected/revoked: inviting is open to any company by design (needs the other admin); "
                  "test_federation covers the handshake"),
    Entry("PUT /admin/connections/{peer}", {**_x(NF, "ok", "ok"), **ADMIN_ROLE}, {"presence": True},
          params={"peer": "peer"}),
    Entry("POST /admin/connections/{peer}/accept", {**_x(NF, CF, CF), **ADMIN_ROLE}, params={"peer": "peer"}),
    Entry("POST /admin/connections/{peer}/decline", {**_x(NF, CF, CF), **ADMIN_ROLE}, params={"peer": "peer"}),
    Entry("POST /admin/connections/{peer}/revoke", {**_x(NF, None, CF), **ADMIN_ROLE}, params={"peer": "peer"},
          why_not="policy: either side may revoke an active connection by design (that is case revoked)"),
    Entry("GET /admin/policy", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}),
    Entry("PUT /admin/policy", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}, {"mode": "all"}),
    # the preview policy of mobile push: the caller's own company's only
    Entry("GET /admin/push", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}),
    Entry("PUT /admin/push", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}, {"preview": "none"}),
    Entry("GET /admin/users", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}, hidden=("victim_uid",)),
    Entry("PUT /admin/users/{user_id}/roles", {**_x(NF, NF, NF), **ADMIN_ROLE}, {"roles": ["admin"]},
          params={"user_id": "victim_uid"}),
    Entry("GET /admin/audit", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}, hidden=("victim_uid",)),
    # the SCIM role map (docs/scim.md): the other company's admin reads and sets its own map only
    Entry("GET /admin/scim/roles", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}),
    Entry("PUT /admin/scim/roles", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}, {"roleMap": {"attack": "admin"}}),
    # usage (chalicelib/usage.py): always the caller's own company; tests/e2e/test_usage.py
    Entry("GET /admin/usage", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}, hidden=("peer", "victim_uid")),
    # expert topics (docs/experts.md): the other company's admin names the victim as an expert / the
    # victim's id as a topic: neither exists in its own company
    Entry("GET /admin/experts/topics", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}, hidden=("victim_uid",)),
    Entry("POST /admin/experts/topics", {**_x(NF, NF, NF), **ADMIN_ROLE},
          {"name": "ATTACK {marker}", "users": ["{victim_uid}"]}),
    Entry("PUT /admin/experts/topics/{topic_id}", {**_x(NF, NF, NF), **ADMIN_ROLE}, {"name": "ATTACK {marker}"},
          params={"topic_id": "victim_uid"}),
    Entry("DELETE /admin/experts/topics/{topic_id}", {**_x(NF, NF, NF), **ADMIN_ROLE},
          params={"topic_id": "victim_uid"}),
    # sharing: the other company's admin cannot share the victim's topic (not its own), nor accept a
    # topic of the victim's company that was never shared with it
    Entry("PUT /admin/experts/topics/{topic_id}/sharing", {**_x(NF, NF, NF), **ADMIN_ROLE},
          {"peerTenantId": "{peer}", "shared": True}, params={"topic_id": "victim_uid"}),
    Entry("PUT /admin/experts/shared/{peer}/{topic_id}", {**_x(NF, NF, "not_found|conflict"), **ADMIN_ROLE},
          {"accepted": True}, params={"peer": "peer", "topic_id": "victim_uid"}),
    # compliance: a file of the company's members (kept by a hold after its deletion, or clean)
    Entry("GET /admin/files/{file_id}/download", {**_x(NF, NF, NF), **ADMIN_ROLE}, params={"file_id": "file"}),
    # the review queue: the other company's caller is its admin *and reviewer* (test_isolation.build);
    # the victim's item (``review_item``) carries VICTIM-SECRET in its excerpt. Admins of the victim's
    # company without the reviewer role are refused too: tests/e2e/test_review.py.
    Entry("GET /admin/review/items", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}, hidden=("review_item", "victim_uid")),
    Entry("GET /admin/review/items", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}, {"conversationId": "{conv}"},
          hidden=("review_item", "victim_uid")),
    Entry("GET /admin/review/items/{item_id}", {**_x(NF, NF, NF), **ADMIN_ROLE}, params={"item_id": "review_item"}),
    Entry("POST /admin/review/items/{item_id}/claim", {**_x(NF, NF, NF), **ADMIN_ROLE},
          params={"item_id": "review_item"}),
    Entry("POST /admin/review/items/{item_id}/release", {**_x(NF, NF, NF), **ADMIN_ROLE},
          params={"item_id": "review_item"}),
    Entry("POST /admin/review/items/{item_id}/resolve", {**_x(NF, NF, NF), **ADMIN_ROLE},
          {"resolution": "dismissed", "note": "ATTACK {marker}"}, params={"item_id": "review_item"}),
    Entry("GET /admin/review/items/{item_id}/case", {**_x(NF, NF, NF), **ADMIN_ROLE},
          params={"item_id": "review_item"}),
    Entry("GET /admin/review/cases", {**_x("ok", "ok", "ok"), **ADMIN_ROLE}, {"conversationId": "{conv}"},
          hidden=("review_item", "victim_uid")),
]
