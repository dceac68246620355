"""pynamodb models: the only place that knows table names, keys and indexes.

Every access pattern is a GetItem, BatchGetItem or Query on a key or index;
they are listed in ``docs/data-model.md``.  Table names come from
:mod:`chalicelib.config`; the endpoint comes from the standard
``AWS_ENDPOINT_URL_DYNAMODB``/``AWS_ENDPOINT_URL`` variables through botocore
(``Meta.host`` stays unset on purpose).

One module per feature (``tenants``, ``users``, ``messages``, ...; shared
defaults and the user key format in ``base``).  This package is their one
registry: ``from chalicelib.models import Message`` imports the ``messages``
module only, on first use (PEP 562), so a function builds the models it
runs and no others (docs/operations.md "Cold start").  ``ALL_MODELS`` and
``TTL_ATTRIBUTES`` import every module: for the stack, infra and tests.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any


# name -> the module of this package that defines it
HOME = {
    # base
    "_Meta": "base",
    "_S": "base",
    "batch_get_across": "base",
    "condition_failed": "base",
    "split_user_key": "base",
    "tenant_of": "base",
    "transaction": "base",
    "user_key": "base",
    "user_ref": "base",
    # tenants
    "DomainClaim": "tenants",
    "Tenant": "tenants",
    "TenantLink": "tenants",
    "TenantsByIssuer": "tenants",
    # audit
    "AuditEntry": "audit",
    # users
    "EMAIL_CLAIM": "users",
    "EmailClaim": "users",
    "email_claim_key": "users",
    "User": "users",
    "UsersByEmail": "users",
    "UsersByUserName": "users",
    "user_name_key": "users",
    # presence
    "mark_expert_pool": "presence",
    "unmark_expert_pool": "presence",
    "Connection": "presence",
    "ConnectionsByUser": "presence",
    "Presence": "presence",
    "Subscription": "presence",
    "SubscriptionsByWatcher": "presence",
    # conversations
    "Conversation": "conversations",
    "Member": "conversations",
    "MembersByUser": "conversations",
    "PublicChannels": "conversations",
    # messages
    "Idempotency": "messages",
    "Message": "messages",
    "MessagesByRetainedSender": "messages",
    "MessagesByThread": "messages",
    "RateCounter": "messages",
    # files
    "File": "files",
    "TenantUsage": "files",
    # directory
    "DirectoryGroup": "directory",
    "ScimCredential": "directory",
    # retention
    "HeldOriginal": "retention",
    "LegalHold": "retention",
    "OriginalsBySender": "retention",
    "RetentionRule": "retention",
    # exports
    "Export": "exports",
    # screening
    "DlpRules": "screening",
    # review
    "DlpFlag": "review",
    "FlagsByConversation": "review",
    "FlagsByQueue": "review",
    "FlagsBySender": "review",
    # rosters
    "OnlineEntry": "rosters",
    # search
    "UserSearchToken": "search",
    # push
    "PushPreferences": "push",
    "PushDevice": "push",
    # usage
    "UsageDay": "usage",
    # experts
    "expert_waiting_key": "experts",
    "expert_waiting": "experts",
    "EXPERT_WORD_SEP": "experts",
    "EXPERT_ALL_TOPICS": "experts",
    "expert_entry_key": "experts",
    "expert_word_key": "experts",
    "expert_entries": "experts",
    "expert_word_hits": "experts",
    "expert_write": "experts",
    "expert_share_key": "experts",
    "expert_shares": "experts",
    "ExpertItem": "experts",

}

# Every table, in the order infra/ and the local stack create them.
_ALL = ("Tenant", "DomainClaim", "TenantLink", "AuditEntry", "User", "Connection", "Presence", "Subscription",
        "Conversation", "Member", "Message", "Idempotency", "RateCounter", "File", "TenantUsage",
        "DirectoryGroup", "ScimCredential", "RetentionRule", "LegalHold", "Export", "HeldOriginal",
        "DlpRules", "DlpFlag", "OnlineEntry", "UserSearchToken", "PushDevice", "ExpertItem", "UsageDay")
# DynamoDB TTL attribute per table (the local stack and infra/ enable these).
_TTL = {"Connection": "expires_at", "Subscription": "expires_at", "Idempotency": "expires_at",
        "RateCounter": "expires_at", "File": "expires_at", "Message": "expires_at", "HeldOriginal": "expires_at",
        "OnlineEntry": "expires_at", "UsageDay": "expires_at", "ExpertItem": "expires_at"}


def __getattr__(name: str) -> Any:
    if name == "ALL_MODELS":
        value: Any = tuple(__getattr__(n) for n in _ALL)
    elif name == "TTL_ATTRIBUTES":
        value = {__getattr__(n): attr for n, attr in _TTL.items()}
    elif name in HOME:
        value = getattr(importlib.import_module(f"{__name__}.{HOME[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *HOME, "ALL_MODELS", "TTL_ATTRIBUTES"})


def create_tables(wait: bool = True) -> None:
    """Create every table that is missing (idempotent); used by the local stack and ops."""
    ttl_attributes = __getattr__("TTL_ATTRIBUTES")
    for model in __getattr__("ALL_MODELS"):
        if not model.exists():
            model.create_table(wait=wait)
        ttl_attr = ttl_attributes.get(model)
        if ttl_attr:
            client = model._get_connection().connection.client
            desc = client.describe_time_to_live(TableName=model.Meta.table_name)
            if desc["TimeToLiveDescription"]["TimeToLiveStatus"] not in ("ENABLED", "ENABLING"):
                client.update_time_to_live(
                    TableName=model.Meta.table_name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attr},
                )


if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from .base import _Meta, _S, batch_get_across, condition_failed, split_user_key, tenant_of, transaction, user_key, user_ref  # noqa: F401
    from .tenants import DomainClaim, Tenant, TenantLink, TenantsByIssuer  # noqa: F401
    from .audit import AuditEntry  # noqa: F401
    from .users import EMAIL_CLAIM, EmailClaim, email_claim_key, User, UsersByEmail, UsersByUserName, user_name_key  # noqa: F401
    from .presence import mark_expert_pool, unmark_expert_pool, Connection, ConnectionsByUser, Presence, Subscription, SubscriptionsByWatcher  # noqa: F401
    from .conversations import Conversation, Member, MembersByUser, PublicChannels  # noqa: F401
    from .messages import Idempotency, Message, MessagesByRetainedSender, MessagesByThread, RateCounter  # noqa: F401
    from .files import File, TenantUsage  # noqa: F401
    from .directory import DirectoryGroup, ScimCredential  # noqa: F401
    from .retention import HeldOriginal, LegalHold, OriginalsBySender, RetentionRule  # noqa: F401
    from .exports import Export  # noqa: F401
    from .screening import DlpRules  # noqa: F401
    from .review import DlpFlag, FlagsByConversation, FlagsByQueue, FlagsBySender  # noqa: F401
    from .rosters import OnlineEntry  # noqa: F401
    from .search import UserSearchToken  # noqa: F401
    from .push import PushDevice, PushPreferences  # noqa: F401
    from .experts import ExpertItem, expert_waiting_key, expert_waiting, EXPERT_WORD_SEP, EXPERT_ALL_TOPICS, expert_entry_key, expert_word_key, expert_entries, expert_word_hits, expert_write, expert_share_key, expert_shares  # noqa: F401
    from .usage import UsageDay  # noqa: F401
