"""Delivery-time model: time to the last recipient of one event, fitted locally, predicted for AWS.

The path of one event to N online connections of a large conversation
(chalicelib/fanout.py, services/events.py, delivery_worker.py):

    ack posted -> 1 queue hop -> planning worker: 1 roster Query page (P entries), ranges of the rest queued
               -> K = ceil((N - P) / G) range workers at once: their Query pages + SendMessageBatch of shards
               -> shards of S connections, C workers at once, F posts in flight each, L per post

    T(N) = hop + plan(N) + posts(N)
    plan(N)  = q + [N > P] * (hop + ceil(G' / E) * q + ceil(G' / S / 10) * b),   G' = (N - P) / K
               (the planner's page, then the ranges read side by side; K <= C, else in waves)
    posts(N) = max(ceil(N / S / C) * (ceil(S / F) * L + o),      (workers' own pace)
                   N / R)                                        (the account's @connections rate)

Shards are queued as the plan goes, so posting overlaps planning; the model
adds them, which overstates T by up to plan(N) (a bound, not a point estimate).

Fitted on this machine's run of bench/delivery_scale.py: the local stack's
posts are bounded by its one-process gateway, so locally R is the
gateway's measured throughput (fitted from the smaller virtual run), and L
is the virtual connections' configured latency.  Validation: the model with
the fitted parameters predicts the larger virtual run, compared with what
was measured.  The AWS figures then swap in AWS's parameters (below, each
with its source or its assumption).

Usage: python bench/delivery_model.py [bench/results/delivery_scale.json]
Writes bench/results/delivery_model.json.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Params:
    hop_s: float        # commit -> planning worker running (SQS send + poll + invoke)
    q_s: float          # one roster Query page (E entries, ~1 MB)
    entries_per_page: int
    b_s: float          # one SendMessageBatch of 10 shards
    shard: int          # S: connections per shard
    concurrency: int    # C: delivery workers at once
    in_flight: int      # F: posts in flight per worker
    post_s: float       # L: one @connections post
    overhead_s: float   # o: per shard (invocation, job parsing, metrics)
    rate: float         # R: @connections posts per second the account (or the local gateway) allows
    page: int = 5000    # P: roster entries the planning worker reads itself (DELIVERY_ROSTER_PAGE)
    per_range: int = 50000  # G: entries per range worker (DELIVERY_ROSTER_RANGE)


def predict(n: int, p: Params) -> dict[str, float]:
    shards = math.ceil(n / p.shard)
    plan = p.q_s
    if n > p.page:
        ranges = math.ceil((n - p.page) / p.per_range)
        waves = math.ceil(ranges / p.concurrency)
        each = (n - p.page) / ranges
        plan += p.hop_s + waves * (math.ceil(each / p.entries_per_page) * p.q_s
                                   + math.ceil(each / p.shard / 10) * p.b_s)
    pace = math.ceil(shards / p.concurrency) * (math.ceil(p.shard / p.in_flight) * p.post_s + p.overhead_s)
    posts = max(pace, n / p.rate)
    return {"n": n, "plan_s": plan, "posts_s": posts, "rate_bound_s": n / p.rate, "total_s": p.hop_s + plan + posts}


# AWS, per region. Sources and assumptions (docs/delivery.md "Delivery-time model"):
AWS = Params(
    hop_s=0.05,             # SQS -> Lambda event source: tens of ms when pollers are warm (assumption)
    q_s=0.03,               # DynamoDB Query returning 1 MB: ~10-50 ms in-region (assumption)
    entries_per_page=9000,  # OnlineEntry ~110 bytes -> ~9,000 per 1 MB page
    b_s=0.015,              # SendMessageBatch in-region (assumption)
    shard=250,              # DELIVERY_SHARD_SIZE default
    concurrency=100,        # deliver's maximum concurrency (app.py)
    in_flight=32,           # DELIVERY_MAX_IN_FLIGHT default
    post_s=0.02,            # post_to_connection from Lambda in-region (assumption: 10-30 ms)
    overhead_s=0.02,
    rate=10_000,            # API Gateway account default, requests/s, shared by every tenant
)


def fit_local(result: dict) -> tuple[Params, list[dict]]:
    cfg = result["config"]
    virtual = sorted(result["virtual"], key=lambda v: v["connections"])
    if not virtual or not virtual[0].get("last_ms"):
        raise SystemExit("no virtual-connection run to fit")
    small = virtual[0]
    base = Params(hop_s=0.05, q_s=0.05, entries_per_page=9000, b_s=0.01, shard=cfg["shard_size"],
                  concurrency=max(1, min(cfg["event_workers"], cfg["sqs_max_concurrency"])),
                  in_flight=cfg["max_in_flight"], post_s=small["latency"]["median"] / 1000, overhead_s=0.02,
                  page=cfg.get("roster_page", 5000), per_range=cfg.get("roster_range", 50000),
                  rate=1e12)
    # Fit R: the rate that makes the model meet the smaller run's measured time.
    target = small["last_ms"] / 1000
    lo, hi = 1.0, 1e6
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        if predict(small["connections"], replace(base, rate=mid))["total_s"] > target:
            lo = mid
        else:
            hi = mid
    fitted = replace(base, rate=hi)
    checks = [{"n": v["connections"], "measured_s": v["last_ms"] / 1000,
               "predicted_s": predict(v["connections"], fitted)["total_s"]} for v in virtual if v.get("last_ms")]
    for c in checks:
        c["error"] = c["predicted_s"] / c["measured_s"] - 1
    return fitted, checks


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "results" / "delivery_scale.json"
    result = json.loads(path.read_text())
    local, checks = fit_local(result)
    print(f"local fit: R = {local.rate:,.0f} posts/s (the local gateway's pace), C = {local.concurrency}, "
          f"S = {local.shard}, F = {local.in_flight}, L = {local.post_s * 1000:.0f} ms")
    for c in checks:
        print(f"  {c['n']:>7} connections: measured {c['measured_s']:.1f}s, model {c['predicted_s']:.1f}s "
              f"({c['error']:+.0%}){'  <- fitted on this one' if c is checks[0] else '  <- validation'}")
    raised = replace(AWS, rate=100_000)  # the same 100 workers: 100 x 32 in flight at 20 ms is 160,000 posts/s
    rows = []
    print("\nAWS prediction (default account rate 10,000/s; raised: 100,000/s; 100 delivery workers)")
    print(f"{'online':>10} {'plan s':>7} {'posts s':>8} {'floor N/R':>9} {'total s':>8} {'raised s':>9}")
    for n in (10_000, 100_000, 1_000_000):
        d, r = predict(n, AWS), predict(n, raised)
        rows.append({"default": d, "raised": r})
        print(f"{n:>10,} {d['plan_s']:>7.2f} {d['posts_s']:>8.2f} {d['rate_bound_s']:>9.1f} {d['total_s']:>8.1f} "
              f"{r['total_s']:>9.1f}")
    out = ROOT / "bench" / "results" / "delivery_model.json"
    out.write_text(json.dumps({"local_fit": asdict(local), "validation": checks, "aws": asdict(AWS),
                               "aws_raised": asdict(raised), "predictions": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
