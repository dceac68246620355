"""Settings read from the environment once per container.

Only this module reads ``os.environ`` for application settings; everything
else receives a :class:`Settings` (or the values it holds; the type lives in
``stage_settings``, which services may name without importing this module).  Endpoints are
*not* settings of ours: boto3/botocore/pynamodb pick them up from the
standard ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_DYNAMODB``/
``AWS_ENDPOINT_URL_S3`` variables, so pointing at real AWS needs no code
change.  The one exception is the WebSocket management endpoint, which has
no standard variable (see ``ws_management_endpoint``).
"""
import json
import os
from functools import lru_cache
from typing import Mapping

from .stage_settings import Settings


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    return int(raw) if raw not in (None, "") else default


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
