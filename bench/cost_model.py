"""Dollars from measured counts: per 1M messages and per 1,000 daily active users.

Inputs (nothing here is guessed from reading code; every count is measured):

* bench/prices.json: us-east-1 list prices, with where and when they were read;
* bench/results/send_cost.json (bench/send_cost.py): per send, by online recipients:
  DynamoDB RCU/WCU, @connections posts and bytes, ack latency;
* bench/results/action_cost.json (bench/action_cost.py): connect+disconnect,
  heartbeat, history, sync, read;
* bench/results/presence_cost.json (bench/presence_cost.py): per status change by watchers.
* bench/results/push_cost.json (bench/push_cost.py, optional): what mobile push adds to a message,
  by offline recipients (push stack minus a PUSH_ENABLED=0 stack): DynamoDB RCU/WCU, SNS publishes,
  SQS messages. Its Lambda part counts one delivery-worker request per push job (an upper bound: the
  worker takes 4 messages per invocation) and no duration (not measured); SQS counts 3 requests per
  job (send, receive, delete; also an upper bound, sends and deletes are batched).

Lambda duration is not measured on AWS here: it is taken as the local
stack's ack latency of the action (send: ``ack_ms``; other actions: the
ping round trip of bench/results/ping_rtt.json, at least 10 ms), at the prod
stage's memory from .chalice/config.json. That over-counts a little (the
latency includes the socket round trip) and ignores cold starts.
WebSocket ping/pong control frames are assumed not billed.

Usage profile per daily active user per day (``PROFILE`` below; docs/operations.md "Cost"):
1.5 devices connected 8 h each; 3 (re)connects per device; 40 messages sent to
conversations with 10 online recipient connections; 10 history pages; one
sync (10 new messages) per connect; 30 read markers; heartbeats every 60 s
while active (4 h per device); 6 presence changes seen by 10 watcher
connections; 2 file uploads (1 S3 POST each) and 6 downloads (1 S3 GET each).
A month is 30 days.

Usage: python bench/cost_model.py [--arch arm64|x86_64] [--json] [--push]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

PROFILE = {
    "devices": 1.5,
    "hours_connected_per_device": 8,
    "connects_per_device": 3,
    "messages_sent": 40,
    "recipients_online": 10,
    "history_pages": 10,
    "read_markers": 30,
    "active_hours_per_device": 4,
    "heartbeat_seconds": 60,
    "presence_changes": 6,
    "presence_watchers": 10,
    "file_uploads": 2,
    "file_downloads": 6,
    "days_per_month": 30,
}


def _load(name: str) -> dict[str, Any]:
    path = RESULTS / name
    if not path.exists():
        sys.exit(f"missing {path}: run `python bench/{name.replace('.json', '.py')}` first (make bench)")
    return json.loads(path.read_text())


class Model:
    def __init__(self, arch: str, push_only: bool = False) -> None:
        self.p = json.loads((ROOT / "bench" / "prices.json").read_text())
        cfg = json.loads((ROOT / ".chalice" / "config.json").read_text())
        self.memory_gb = cfg["stages"]["prod"].get("lambda_memory_size", cfg.get("lambda_memory_size", 128)) / 1024
        self.arch = arch
        path = RESULTS / "push_cost.json"
        self.push = json.loads(path.read_text()) if path.exists() else None
        if push_only:
            if self.push is None:
                sys.exit(f"missing {path}: run `python bench/push_cost.py` first")
            return
        self.send = {r["recipients"]: r for r in _load("send_cost.json")["rows"]}
        self.actions = _load("action_cost.json")["actions"]
        self.presence = {r["watchers"]: r for r in _load("presence_cost.json")["status_change"]}
        ping = json.loads((RESULTS / "ping_rtt.json").read_text())["ms"]["p50"] if (RESULTS / "ping_rtt.json").exists() else 10
        self.small_ms = max(10.0, ping)

    # --- unit prices ---------------------------------------------------------------------
    def ws_messages(self, n: float, avg_bytes: float = 1.0) -> float:
        per = max(1, math.ceil(avg_bytes / self.p["api_gateway_websocket"]["message_increment_bytes"]))
        return n * per * self.p["api_gateway_websocket"]["messages_per_million"] / 1e6

    def lambda_cost(self, invocations: float, ms: float) -> float:
        lam = self.p["lambda"]
        gbs = lam["gb_second_arm64"] if self.arch == "arm64" else lam["gb_second_x86_64"]
        return invocations * (lam["requests_per_million"] / 1e6 + ms / 1000 * self.memory_gb * gbs)

    def ddb(self, rcu: float, wcu: float) -> float:
        d = self.p["dynamodb_on_demand"]
        return rcu * d["read_request_units_per_million"] / 1e6 + wcu * d["write_request_units_per_million"] / 1e6

    # --- per action ------------------------------------------------------------------------
    def per_send(self, recipients: int) -> dict[str, float]:
        r = self.send[recipients]
        d, c = r["dynamodb_per_send"], r["connections_api_per_send"]
        posts = c["posts"]
        return {"api_gateway": self.ws_messages(1) + self.ws_messages(posts, c["bytes"] / max(1, posts)),
                "lambda": self.lambda_cost(1, r["ack_ms"]["median"]),
                "dynamodb": self.ddb(d["rcu"], d["wcu"])}

    def per_action(self, name: str, inbound: float = 1, invocations: float = 1) -> dict[str, float]:
        a = self.actions[name]
        return {"api_gateway": self.ws_messages(inbound) + self.ws_messages(a["posts"], a["post_bytes"] / max(1, a["posts"])),
                "lambda": self.lambda_cost(invocations, self.small_ms),
                "dynamodb": self.ddb(a["rcu"], a["wcu"])}

    def per_presence_change(self, watchers: int) -> dict[str, float]:
        r = self.presence[min(self.presence, key=lambda n: abs(n - watchers))]
        # The change itself happens inside another invocation (connect, heartbeat, presence.set):
        # count only its DynamoDB work and its posts to watchers (the caller's ack excluded).
        posts = max(0.0, r["posts"] - 1)
        return {"api_gateway": self.ws_messages(posts, r["post_bytes"] / max(1, r["posts"])),
                "lambda": 0.0, "dynamodb": self.ddb(r["rcu"], r["wcu"])}

    def per_push_message(self, offline: int) -> dict[str, float]:
        """What mobile push adds to one message with ``offline`` pushed recipients (push − baseline)."""
        rows = {label: {r["offline"]: r for r in rows} for label, rows in self.push["rows"].items()}
        p, b = rows["push"][offline], rows["baseline"][offline]
        sns, sqs = self.p["sns_mobile_push"], self.p["sqs_standard"]
        jobs = max(0.0, p["sqs_messages"] - b["sqs_messages"])
        return {"dynamodb": self.ddb(max(0.0, p["dynamodb"]["rcu"] - b["dynamodb"]["rcu"]),
                                     max(0.0, p["dynamodb"]["wcu"] - b["dynamodb"]["wcu"])),
                "sns": p["sns_publishes"] * (sns["publish_requests_per_million"]
                                             + sns["mobile_push_deliveries_per_million"]) / 1e6,
                "sqs": jobs * 3 * sqs["requests_per_million"] / 1e6,
                "lambda": jobs * self.p["lambda"]["requests_per_million"] / 1e6}

    # --- profile -----------------------------------------------------------------------------
    def per_user_day(self) -> dict[str, dict[str, float]]:
        pr = PROFILE
        connects = pr["devices"] * pr["connects_per_device"]
        heartbeats = pr["devices"] * pr["active_hours_per_device"] * 3600 / pr["heartbeat_seconds"]
        lines: dict[str, tuple[float, dict[str, float]]] = {
            "messages sent": (pr["messages_sent"], self.per_send(pr["recipients_online"])),
            # $connect and $disconnect: two invocations, no inbound data message
            "connect+disconnect": (connects, self.per_action("connect+disconnect", inbound=0, invocations=2)),
            "sync after connect": (connects, self.per_action("sync (10 new)")),
            "history pages": (pr["history_pages"], self.per_action("history (50)")),
            "read markers": (pr["read_markers"], self.per_action("read")),
            "heartbeats": (heartbeats, self.per_action("presence.heartbeat")),
            "presence changes": (pr["presence_changes"], self.per_presence_change(pr["presence_watchers"])),
        }
        out = {name: {k: v * n for k, v in unit.items()} for name, (n, unit) in lines.items()}
        minutes = pr["devices"] * pr["hours_connected_per_device"] * 60
        out["connection minutes"] = {"api_gateway": minutes * self.p["api_gateway_websocket"]
                                     ["connection_minutes_per_million"] / 1e6}
        s3 = self.p["s3_standard"]
        out["files (S3 requests)"] = {"s3": pr["file_uploads"] * s3["put_copy_post_list_per_thousand"] / 1000
                                      + pr["file_downloads"] * s3["get_select_per_thousand"] / 1000}
        return out


def _total(parts: dict[str, float]) -> float:
    return sum(parts.values())


def print_push(m: Model) -> dict[int, dict[str, float]]:
    print("\nmobile push, added per 1,000,000 messages, by offline recipients pushed (bench/push_cost.py)")
    print(f"{'offline':>8} {'DynamoDB $':>11} {'SNS $':>8} {'SQS $':>7} {'Lambda $':>9} {'total $':>9}")
    out = {}
    for n in m.push["cases"]:
        parts = {k: v * 1e6 for k, v in m.per_push_message(n).items()}
        out[n] = parts
        print(f"{n:>8} {parts['dynamodb']:>11.2f} {parts['sns']:>8.2f} {parts['sqs']:>7.2f} "
              f"{parts['lambda']:>9.2f} {_total(parts):>9.2f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=("arm64", "x86_64"), default="arm64")
    ap.add_argument("--json", action="store_true", help="also write bench/results/cost_model.json")
    ap.add_argument("--push", action="store_true", help="only mobile push (needs bench/results/push_cost.json only)")
    args = ap.parse_args()
    m = Model(args.arch, push_only=args.push)
    print(f"prices: {m.p['region']}, read {m.p['read']} ({m.p['how_read'].split('.')[0]}.)")
    if args.push:
        print_push(m)
        return
    print(f"Lambda: {args.arch}, {m.memory_gb * 1024:.0f} MB (prod stage)\n")

    print("per 1,000,000 messages sent, by online recipient connections")
    print(f"{'recipients':>10} {'API GW $':>10} {'Lambda $':>10} {'DynamoDB $':>11} {'total $':>10}")
    per_million = {}
    for n in sorted(m.send):
        parts = {k: v * 1e6 for k, v in m.per_send(n).items()}
        per_million[n] = parts
        print(f"{n:>10} {parts['api_gateway']:>10.2f} {parts['lambda']:>10.2f} {parts['dynamodb']:>11.2f} "
              f"{_total(parts):>10.2f}")

    push_per_million = print_push(m) if m.push else {}

    day = m.per_user_day()
    k = 1000 * PROFILE["days_per_month"]
    print(f"\nper 1,000 daily active users per month ({PROFILE['days_per_month']} days; profile in the docstring)")
    print(f"{'item':<22} {'API GW $':>9} {'Lambda $':>9} {'DynamoDB $':>10} {'S3 $':>7} {'total $':>9}")
    sums: dict[str, float] = {}
    for name, parts in day.items():
        row = {key: parts.get(key, 0.0) * k for key in ("api_gateway", "lambda", "dynamodb", "s3")}
        for key, v in row.items():
            sums[key] = sums.get(key, 0.0) + v
        print(f"{name:<22} {row['api_gateway']:>9.2f} {row['lambda']:>9.2f} {row['dynamodb']:>10.2f} "
              f"{row['s3']:>7.3f} {_total(row):>9.2f}")
    print(f"{'total':<22} {sums['api_gateway']:>9.2f} {sums['lambda']:>9.2f} {sums['dynamodb']:>10.2f} "
          f"{sums['s3']:>7.3f} {_total(sums):>9.2f}")
    print("(excluded: DynamoDB storage, S3 storage and transfer, CloudWatch logs and metrics, data transfer out, "
          "file scanning compute)")
    if args.json:
        out = {"arch": args.arch, "memory_mb": m.memory_gb * 1024, "profile": PROFILE, "prices_read": m.p["read"],
               "per_million_messages": per_million,
               "push_per_million_messages": push_per_million,
               "per_1000_dau_month": {name: {key: v * k for key, v in parts.items()} for name, parts in day.items()},
               "per_1000_dau_month_total": sums}
        (RESULTS / "cost_model.json").write_text(json.dumps(out, indent=2) + "\n")
        print("wrote bench/results/cost_model.json")


if __name__ == "__main__":
    main()
