"""Settings read from the environment once per container.

Only this module reads ``os.environ`` for application settings; everything
else receives a :class:`Settings` (or the values it holds).  Endpoints are
*not* settings of ours: boto3/botocore/pynamodb pick them up from the
standard ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_DYNAMODB``/
``AWS_ENDPOINT_URL_S3`` variables, so pointing at real AWS needs no code
change.  The one exception is the WebSocket management endpoint, which has
no standard variable (see ``ws_management_endpoint``).
"""
import json
import os
from functools import lru_cache
from typing import Mapping, NamedTuple


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    return int(raw) if raw not in (None, "") else default


# A NamedTuple, not a dataclass, and this module without ``from __future__ import annotations``:
# every function builds this class on its cold start; a dataclass compiles generated methods for
# it, and string annotations are each compiled by typing (3.2 ms as a frozen dataclass, 1.0 ms
# as a NamedTuple with string annotations, 0.4 ms as it is; docs/operations.md "Cold start").
class Settings(NamedTuple):
    stage: str
    region: str
    tenants_table: str
    domains_table: str
    links_table: str
    audit_table: str
    users_table: str
    connections_table: str
    presence_table: str
    subscriptions_table: str
    presence_queue: str
    conversations_table: str
    members_table: str
    messages_table: str
    idempotency_table: str
    ratelimits_table: str
    files_bucket: str
    # https://{api-id}.execute-api.{region}.amazonaws.com/{stage} on AWS,
    # http://127.0.0.1:<port>/<stage> on the local stack.
    ws_management_endpoint: str | None
    # Largest inbound frame the app accepts (API Gateway itself caps at 128 KB).
    max_frame_bytes: int
    # Connection records expire (DynamoDB TTL) this long after connect; API
    # Gateway closes a socket after 2 h at most, so a record older than that is
    # a leftover of a lost $disconnect.
    connection_ttl_seconds: int
    # Seconds a tenant's identity configuration is cached in a warm container.
    tenant_cache_seconds: int
    # Minimum seconds between JWKS refetches for one issuer (unknown kid).
    jwks_refetch_seconds: int
    jwt_leeway_seconds: int
    # Messaging limits (documented in docs/protocol.md).
    max_body_bytes: int
    max_group_members: int
    page_size: int
    sends_per_second: int          # per user (all devices and REST together); default of a tenant's limit
    typing_ttl_seconds: int
    # Per-tenant limits' defaults (docs/operations.md "Limits"; a tenant's own are set with tenantctl limits).
    devices_per_user: int
    connects_per_second: int       # new sockets per second, per tenant
    sends_per_second_tenant: int
    # Presence (docs/presence.md).
    presence_idle_seconds: int
    presence_coalesce_seconds: int
    presence_roster_cap: int
    delivery_max_in_flight: int
    delivery_max_attempts: int
    # Delivery at scale (docs/delivery.md): events of large audiences go to workers in shards.
    delivery_queue: str
    delivery_inline_max: int       # connections posted inside the invocation that resolved them
    delivery_shard_size: int       # connections per delivery shard (one queue message)
    delivery_large_members: int    # conversations with more members are resolved on a worker
    delivery_roster_page: int      # roster entries a worker reads before posting (1 Query)
    delivery_roster_range: int     # a roster longer than one page is split into ranges of about this many
    online_table: str              # online rosters of large conversations
    # Files (docs/files.md).
    files_table: str
    usage_table: str
    files_queue: str              # delayed scan retries while the scanner is unavailable
    max_file_bytes: int
    tenant_quota_bytes: int       # default; a tenant's usage item may carry its own
    file_types: tuple[str, ...]   # content-type allowlist
    upload_url_seconds: int       # presigned POST lifetime
    download_url_seconds: int     # presigned GET lifetime
    scanner: str                  # builtin | clamd | guardduty | package.module:factory
    clamd_address: str | None     # unix:/path or tcp:host:port
    clamd_timeout_seconds: float  # connect and each read/write
    clamd_scan_timeout_seconds: float
    scan_max_bytes: int           # clamd's StreamMaxLength must be at least this
    scan_retry_seconds: int       # first retry delay; doubles, at most 900 (SQS)
    scan_max_attempts: int
    guardduty_verdict_seconds: int  # SCANNER=guardduty: a file with no verdict after this long is refused
    file_screen_max_chars: int    # text of an upload screened (DLP); beyond it: the file_unscreened rule
    # Directory sync (SCIM 2.0, docs/scim.md).
    groups_table: str
    scim_tokens_table: str
    # Files, part 2 (docs/files.md "Quota accounting", "Browsers (CORS)").
    upload_release_grace_seconds: int   # after the upload form expires, then an unused reservation is released
    files_cors_origins: tuple[str, ...]  # browser origins allowed to POST/GET the bucket; empty = no CORS rule
    # Compliance: retention, legal hold, eDiscovery export (docs/compliance.md).
    retention_table: str
    holds_table: str
    exports_table: str
    originals_table: str           # what a legal hold keeps of edited/deleted messages (HeldOriginal)
    compliance_queue: str          # hold sweeps and export steps
    retention_day_seconds: int     # length of one retention "day": 86400 deployed; the test stack uses 1
    export_pages_per_step: int     # message pages (Query) one export step reads before handing on
    export_chunk_conversations: int  # conversations an export lists at a time (its plan item holds one chunk)
    export_url_seconds: int        # presigned GET lifetime of a finished export
    # Compliance: screening (DLP, docs/compliance.md "Screening (DLP)").
    dlp_rules_table: str
    dlp_flags_table: str
    dlp_cache_seconds: int         # a tenant's compiled rules are reused this long in a warm container
    # People search (docs/data-model.md "People search"): the name/email token index of the directory.
    user_search_table: str
    # Mobile push (docs/push.md): the devices table; "<platform>:<appId>" -> SNS platform application
    # ARN (PUSH_APPLICATIONS, JSON); a device counts as active this long after its last activity;
    # the preview's length (sender + this many characters of the text).
    push_devices_table: str = "chat-dev-push-devices"
    push_applications: tuple[tuple[str, str], ...] = ()
    push_active_seconds: int = 120
    push_preview_chars: int = 80
    # Ordinary messages (no DM, no mention) push to "all"/keyword users only in conversations of at
    # most this many members: larger ones would read every membership per message (docs/push.md).
    push_group_members: int = 100
    # Ops' switch (and the push benchmark's baseline): "0" queues no push or clear job at all.
    push_enabled: bool = True
    # Ask the experts (docs/experts.md): expert topics and their questions, one table.
    experts_table: str = "chat-dev-experts"
    # Usage each company can see (chalicelib/usage.py, docs/operations.md "Usage"): per tenant and UTC
    # day, sharded counters (this many items per tenant-day).
    usage_days_table: str = "chat-dev-usage-days"
    usage_shards: int = 8
    # Fair delivery (chalicelib/fair.py): a company's posts per second on the shared delivery workers.
    delivery_posts_per_second_tenant: int = 2000


DEFAULT_FILE_TYPES = ",".join([
    "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain", "text/csv",
    "text/markdown", "application/json", "application/zip", "audio/mpeg", "video/mp4",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
])


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    stage = env.get("CHAT_STAGE", "dev")
    return Settings(
        stage=stage,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        tenants_table=env.get("TENANTS_TABLE", f"chat-{stage}-tenants"),
        domains_table=env.get("DOMAINS_TABLE", f"chat-{stage}-domains"),
        links_table=env.get("LINKS_TABLE", f"chat-{stage}-links"),
        audit_table=env.get("AUDIT_TABLE", f"chat-{stage}-audit"),
        users_table=env.get("USERS_TABLE", f"chat-{stage}-users"),
        connections_table=env.get("CONNECTIONS_TABLE", f"chat-{stage}-connections"),
        presence_table=env.get("PRESENCE_TABLE", f"chat-{stage}-presence"),
        subscriptions_table=env.get("SUBSCRIPTIONS_TABLE", f"chat-{stage}-subscriptions"),
        presence_queue=env.get("PRESENCE_QUEUE", f"chat-{stage}-presence"),
        conversations_table=env.get("CONVERSATIONS_TABLE", f"chat-{stage}-conversations"),
        members_table=env.get("MEMBERS_TABLE", f"chat-{stage}-members"),
        messages_table=env.get("MESSAGES_TABLE", f"chat-{stage}-messages"),
        idempotency_table=env.get("IDEMPOTENCY_TABLE", f"chat-{stage}-idempotency"),
        ratelimits_table=env.get("RATELIMITS_TABLE", f"chat-{stage}-ratelimits"),
        files_bucket=env.get("FILES_BUCKET", f"chat-{stage}-files"),
        ws_management_endpoint=env.get("WS_MANAGEMENT_ENDPOINT") or None,
        max_frame_bytes=_int(env, "MAX_FRAME_BYTES", 64 * 1024),
        connection_ttl_seconds=_int(env, "CONNECTION_TTL_SECONDS", 2 * 3600 + 600),
        tenant_cache_seconds=_int(env, "TENANT_CACHE_SECONDS", 30),
        jwks_refetch_seconds=_int(env, "JWKS_REFETCH_SECONDS", 30),
        jwt_leeway_seconds=_int(env, "JWT_LEEWAY_SECONDS", 30),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 8 * 1024),
        max_group_members=_int(env, "MAX_GROUP_MEMBERS", 50),
        page_size=_int(env, "PAGE_SIZE", 50),
        sends_per_second=_int(env, "SENDS_PER_SECOND", 10),
        devices_per_user=_int(env, "DEVICES_PER_USER", 10),
        connects_per_second=_int(env, "CONNECTS_PER_SECOND", 100),
        sends_per_second_tenant=_int(env, "SENDS_PER_SECOND_TENANT", 1000),
        typing_ttl_seconds=_int(env, "TYPING_TTL_SECONDS", 6),
        presence_idle_seconds=_int(env, "PRESENCE_IDLE_SECONDS", 300),
        presence_coalesce_seconds=_int(env, "PRESENCE_COALESCE_SECONDS", 2),
        presence_roster_cap=_int(env, "PRESENCE_ROSTER_CAP", 500),
        delivery_max_in_flight=_int(env, "DELIVERY_MAX_IN_FLIGHT", 32),
        delivery_max_attempts=_int(env, "DELIVERY_MAX_ATTEMPTS", 3),
        delivery_queue=env.get("DELIVERY_QUEUE", f"chat-{stage}-delivery"),
        delivery_inline_max=_int(env, "DELIVERY_INLINE_MAX", 50),
        delivery_shard_size=_int(env, "DELIVERY_SHARD_SIZE", 250),
        delivery_large_members=_int(env, "DELIVERY_LARGE_MEMBERS", 100),
        delivery_roster_page=_int(env, "DELIVERY_ROSTER_PAGE", 5000),
        delivery_roster_range=_int(env, "DELIVERY_ROSTER_RANGE", 50000),
        online_table=env.get("ONLINE_TABLE", f"chat-{stage}-online"),
        files_table=env.get("FILES_TABLE", f"chat-{stage}-files"),
        usage_table=env.get("USAGE_TABLE", f"chat-{stage}-usage"),
        files_queue=env.get("FILES_QUEUE", f"chat-{stage}-file-scans"),
        max_file_bytes=_int(env, "MAX_FILE_BYTES", 25 * 1024 * 1024),
        tenant_quota_bytes=_int(env, "TENANT_QUOTA_BYTES", 10 * 1024 ** 3),
        file_types=tuple(t.strip().lower() for t in env.get("FILE_TYPES", DEFAULT_FILE_TYPES).split(",")
                         if t.strip()),
        upload_url_seconds=_int(env, "UPLOAD_URL_SECONDS", 300),
        download_url_seconds=_int(env, "DOWNLOAD_URL_SECONDS", 60),
        scanner=env.get("SCANNER", "builtin"),
        clamd_address=env.get("CLAMD_ADDRESS") or None,
        clamd_timeout_seconds=float(env.get("CLAMD_TIMEOUT_SECONDS") or 5),
        clamd_scan_timeout_seconds=float(env.get("CLAMD_SCAN_TIMEOUT_SECONDS") or 20),
        scan_max_bytes=_int(env, "SCAN_MAX_BYTES", 25 * 1024 * 1024),
        scan_retry_seconds=_int(env, "SCAN_RETRY_SECONDS", 30),
        scan_max_attempts=_int(env, "SCAN_MAX_ATTEMPTS", 12),
        guardduty_verdict_seconds=_int(env, "GUARDDUTY_VERDICT_SECONDS", 900),
        file_screen_max_chars=_int(env, "FILE_SCREEN_MAX_CHARS", 8 * 1024 * 1024),
        groups_table=env.get("GROUPS_TABLE", f"chat-{stage}-groups"),
        scim_tokens_table=env.get("SCIM_TOKENS_TABLE", f"chat-{stage}-scim-tokens"),
        upload_release_grace_seconds=_int(env, "UPLOAD_RELEASE_GRACE_SECONDS", 600),
        files_cors_origins=tuple(o.strip() for o in env.get("FILES_CORS_ORIGINS", "").split(",") if o.strip()),
        retention_table=env.get("RETENTION_TABLE", f"chat-{stage}-retention"),
        holds_table=env.get("HOLDS_TABLE", f"chat-{stage}-holds"),
        exports_table=env.get("EXPORTS_TABLE", f"chat-{stage}-exports"),
        originals_table=env.get("ORIGINALS_TABLE", f"chat-{stage}-originals"),
        compliance_queue=env.get("COMPLIANCE_QUEUE", f"chat-{stage}-compliance"),
        retention_day_seconds=_int(env, "RETENTION_DAY_SECONDS", 86400),
        export_pages_per_step=_int(env, "EXPORT_PAGES_PER_STEP", 200),
        export_chunk_conversations=_int(env, "EXPORT_CHUNK_CONVERSATIONS", 1000),
        export_url_seconds=_int(env, "EXPORT_URL_SECONDS", 900),
        dlp_rules_table=env.get("DLP_RULES_TABLE", f"chat-{stage}-dlp-rules"),
        dlp_flags_table=env.get("DLP_FLAGS_TABLE", f"chat-{stage}-dlp-flags"),
        dlp_cache_seconds=_int(env, "DLP_CACHE_SECONDS", 30),
        user_search_table=env.get("USER_SEARCH_TABLE", f"chat-{stage}-user-search"),
        push_devices_table=env.get("PUSH_DEVICES_TABLE", f"chat-{stage}-push-devices"),
        push_applications=tuple(sorted(json.loads(env.get("PUSH_APPLICATIONS") or "{}").items())),
        push_active_seconds=_int(env, "PUSH_ACTIVE_SECONDS", 120),
        push_preview_chars=_int(env, "PUSH_PREVIEW_CHARS", 80),
        push_group_members=_int(env, "PUSH_GROUP_MEMBERS", 100),
        push_enabled=env.get("PUSH_ENABLED", "1").strip().lower() not in ("0", "false", "no", "off"),
        experts_table=env.get("EXPERTS_TABLE", f"chat-{stage}-experts"),
        usage_days_table=env.get("USAGE_DAYS_TABLE", f"chat-{stage}-usage-days"),
        usage_shards=_int(env, "USAGE_SHARDS", 8),
        delivery_posts_per_second_tenant=_int(env, "DELIVERY_POSTS_PER_SECOND_TENANT", 2000),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The container's settings, read on first use."""
    return from_env()
