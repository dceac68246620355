"""Mobile push devices: one SNS platform endpoint per device token (docs/push.md)."""
from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model

from .base import _Meta, _S


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
    # The socket the device registered on (push.register over WebSocket): a read on that socket sends
    # no "read elsewhere" update to this device (docs/push.md).
    connection_id = UnicodeAttribute(null=True)

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


# --- push preferences --------------------------------------------------------------

class PushPreferences(Model):
    """A user's push preferences (docs/push.md): one item in the push-devices table.

    ``owner`` = user key, ``device_id`` = ``~prefs`` (a device id can never
    be that: the schema allows no ``~``), so the user's devices and
    preferences share a partition and SCIM deactivation's Query finds both.
    The push job reads the items of its offline recipients with BatchGetItem
    (100 per request).  Not in ``ALL_MODELS``: ``PushDevice`` owns the table.
    """

    class Meta(_Meta):
        table_name = _S.push_devices_table

    owner = UnicodeAttribute(hash_key=True)
    device_id = UnicodeAttribute(range_key=True)
    level = UnicodeAttribute(null=True)          # all | mentions | nothing
    keywords = ListAttribute(of=UnicodeAttribute, null=True)
    timezone = UnicodeAttribute(null=True)       # IANA
    quiet_start = UnicodeAttribute(null=True)    # HH:MM local
    quiet_end = UnicodeAttribute(null=True)
    quiet_days = ListAttribute(of=NumberAttribute, null=True)
    notify_anyway = UnicodeAttribute(null=True)  # none | mentions | mentions_and_direct
    status_holds = BooleanAttribute(null=True)
    updated_at = NumberAttribute(default=0)

    ITEM = "~prefs"

    @classmethod
    def find(cls, key: str) -> "PushPreferences | None":
        """GetItem: 1 request."""
        try:
            return cls.get(key, cls.ITEM, consistent_read=True)
        except cls.DoesNotExist:
            return None

    @classmethod
    def many(cls, keys: list[str]) -> dict[str, "PushPreferences"]:
        """BatchGetItem in pages of 100: user key -> preferences (users who set any)."""
        unique = list(dict.fromkeys(keys))
        return {item.owner: item for item in cls.batch_get([(k, cls.ITEM) for k in unique])} if unique else {}
