"""What a stage's settings are: one read-only record, filled from the environment by ``config``.

Apart from ``config`` so that a service can name the type (``Env.settings``)
without importing the module that reads the environment.
"""
from typing import NamedTuple


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
