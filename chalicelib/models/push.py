"""Mobile push devices: one SNS platform endpoint per device token (docs/push.md)."""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
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
