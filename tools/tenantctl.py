"""Ops command line: register tenants and directory users in DynamoDB.

Uses the same models and endpoint settings as the app, so it works against
the local stack (``--stack .devstack/stack.json``) and against AWS alike::

    python -m tools.tenantctl register --tenant acme --name "Acme Corp" \\
        --domain acme.example --issuer https://login.acme.example \\
        --audience enterprise-chat
    python -m tools.tenantctl add-user --tenant acme --sub 00u1 \\
        --email alice@acme.example --name "Alice" --role admin
    python -m tools.tenantctl scim-roles --tenant acme \\
        --map "Global Administrator=admin" --map "External=guest"
    python -m tools.tenantctl show --tenant acme
    python -m tools.tenantctl limits --tenant acme --devices-per-user 5 \\
        --connects-per-second 50 --sends-per-second-user 10 --sends-per-second-tenant 2000 \
        --delivery-posts-per-second 5000
    python -m tools.tenantctl limits --tenant acme          # show (0 resets one to the default)
    python -m tools.tenantctl usage --tenant acme --tenant globex --from 2026-11-01 --to 2026-11-30 \
        [--format csv]                                     # usage by UTC day (docs/operations.md "Usage")
    python -m tools.tenantctl search-backfill --tenant acme
    python -m tools.tenantctl review-backfill --tenant acme
    python -m tools.tenantctl email-claims-backfill --tenant acme [--after USER_ID]
    python -m tools.tenantctl suspend --tenant acme        # refuse its tokens, close its sockets
    python -m tools.tenantctl resume --tenant acme
    python -m tools.tenantctl create-tables
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tenantctl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", metavar="STACK_JSON", default=None,
                        help="talk to this local stack (its .devstack/stack.json, written by `make run`): "
                             "its DynamoDB, S3 and @connections endpoints and the dev stage's table names; "
                             "without it, the AWS_ENDPOINT_URL_* and table variables of the environment")
    sub = parser.add_subparsers(dest="cmd", required=True)

    reg = sub.add_parser("register", help="create or update a tenant")
    reg.add_argument("--tenant", required=True)
    reg.add_argument("--name", required=True)
    reg.add_argument("--domain", action="append", required=True, help="email domain (repeatable)")
    reg.add_argument("--issuer", required=True, help="OIDC issuer URL, exactly as in tokens' iss")
    reg.add_argument("--audience", required=True)
    reg.add_argument("--email-claim", default="email")
    reg.add_argument("--subject-claim", default="sub",
                     help="claim carrying the user id; match it to the IdP's SCIM externalId mapping")
    reg.add_argument("--roles-claim", default="roles")
    reg.add_argument("--jwks-uri", default=None, help="default: discovered from the issuer")
    reg.add_argument("--web-client-id", default=None,
                     help="the web page's OAuth client_id at the IdP (GET /auth/discovery); default: --audience")
    reg.add_argument("--algorithm", action="append", default=None, help="RS256 and/or ES256")
    reg.add_argument("--auto-provision", action="store_true",
                     help="create unknown users of this tenant on first sign-in")

    add = sub.add_parser("add-user", help="create or update a directory user")
    add.add_argument("--tenant", required=True)
    add.add_argument("--sub", required=True, help="the user's subject (sub) at the tenant's IdP")
    add.add_argument("--email", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--role", action="append", default=None, help="admin, member, guest or reviewer (repeatable)")
    add.add_argument("--deactivated", action="store_true")

    roles = sub.add_parser("scim-roles",
                           help="set the tenant's SCIM role map (IdP role -> admin|member|guest|reviewer)")
    roles.add_argument("--tenant", required=True)
    roles.add_argument("--map", action="append", default=[], metavar="IDP_ROLE=ROLE",
                       help="repeatable; matched case-insensitively; unmapped roles become member; none: clear")

    show = sub.add_parser("show", help="print a tenant's configuration")
    show.add_argument("--tenant", required=True)

    lim = sub.add_parser("limits", help="set or show a tenant's usage limits (docs/operations.md \"Limits\")")
    lim.add_argument("--tenant", required=True)
    lim.add_argument("--devices-per-user", type=int, default=None, help="live connections per user")
    lim.add_argument("--connects-per-second", type=int, default=None, help="new connections per second, tenant")
    lim.add_argument("--sends-per-second-user", type=int, default=None, help="messages per second per user")
    lim.add_argument("--sends-per-second-tenant", type=int, default=None, help="messages per second, tenant")
    lim.add_argument("--delivery-posts-per-second", type=int, default=None,
                     help="posts per second on the shared delivery workers, tenant (beyond: queued, late)")

    use = sub.add_parser("usage", help="usage by tenant and UTC day across tenants (docs/operations.md \"Usage\"): "
                                       "1 Query per shard of each named tenant, no Scan")
    use.add_argument("--tenant", action="append", required=True, help="repeatable: the tenants to report")
    use.add_argument("--from", dest="first", default=None, help="first UTC day, YYYY-MM-DD (default: to - 30)")
    use.add_argument("--to", dest="last", default=None, help="last UTC day, YYYY-MM-DD (default: today)")
    use.add_argument("--format", choices=("json", "csv"), default="json")

    sus = sub.add_parser("suspend", help="suspend a tenant: its tokens are refused and its open sockets closed")
    sus.add_argument("--tenant", required=True)
    sus.add_argument("--resweep-seconds", type=float, default=None,
                     help="close the tenant's sockets again after this many seconds, once running containers "
                          "have dropped their cached tenant (default: TENANT_CACHE_SECONDS + 1; 0: no second sweep)")
    res = sub.add_parser("resume", help="make a suspended tenant active again")
    res.add_argument("--tenant", required=True)

    sub.add_parser("create-tables", help="create missing tables (idempotent)")

    rb = sub.add_parser("review-backfill",
                        help="put a tenant's screening entries from before the review queue into it (idempotent, "
                             "resumable: --after the printed cursor)")
    rb.add_argument("--tenant", required=True)
    rb.add_argument("--after", help="resume after this cursor (printed by the previous run)")
    rb.add_argument("--max", type=int, default=1000, help="entries written per run (default 1000)")

    fill = sub.add_parser("search-backfill",
                          help="(re)write the people-search index of a tenant's active users (idempotent)")
    fill.add_argument("--tenant", required=True)

    claims = sub.add_parser("email-claims-backfill",
                            help="write the email claims of a tenant's existing users (idempotent, resumable)")
    claims.add_argument("--tenant", required=True)
    claims.add_argument("--after", default=None, metavar="USER_ID",
                        help="resume after this user id (the last \"after\" a previous run printed)")
    claims.add_argument("--page-size", type=int, default=100)

    args = parser.parse_args(argv)
    if args.stack:  # before chalicelib is imported: its models read the endpoints and table names once
        import os
        from pathlib import Path

        from devstack.launcher import app_env

        os.environ.update(app_env(json.loads(Path(args.stack).read_text())))
    from chalicelib import models, runtime
    from chalicelib.protocol.errors import ChatError, ValidationFailed
    from chalicelib.services import tenants

    try:
        if args.cmd == "register":
            t = tenants.register_tenant(tenants.TenantSpec(
                tenant_id=args.tenant, display_name=args.name, domains=args.domain, issuer=args.issuer,
                audience=args.audience, email_claim=args.email_claim, roles_claim=args.roles_claim, subject_claim=args.subject_claim,
                jwks_uri=args.jwks_uri, algorithms=args.algorithm or ["RS256", "ES256"],
                auto_provision=args.auto_provision, web_client_id=args.web_client_id))
            print(json.dumps({"registered": t.tenant_id, "issuer": t.issuer}))
        elif args.cmd == "add-user":
            u = tenants.upsert_user(args.tenant, args.sub, args.email, args.name, args.role,
                                    "deactivated" if args.deactivated else "active")
            print(json.dumps({"user": u.user_id, "tenant": u.tenant_id, "email": u.email}))
        elif args.cmd == "scim-roles":
            pairs = [m.rpartition("=") for m in args.map]
            if any(not sep for _, sep, _ in pairs):
                raise ValidationFailed("--map takes IDP_ROLE=ROLE")
            t = tenants.set_scim_role_map(args.tenant, {k: v for k, _, v in pairs})
            print(json.dumps({"tenant": t.tenant_id, "scimRoleMap": t.scim_role_map.as_dict()
                              if t.scim_role_map is not None else {}}))
        elif args.cmd == "limits":
            values = {"devicesPerUser": args.devices_per_user, "connectsPerSecond": args.connects_per_second,
                      "sendsPerSecondUser": args.sends_per_second_user,
                      "sendsPerSecondTenant": args.sends_per_second_tenant,
                      "deliveryPostsPerSecond": args.delivery_posts_per_second}
            if any(v is not None for v in values.values()):
                tenants.set_limits(args.tenant, values)
            print(json.dumps(tenants.limits_view(args.tenant), indent=2))
        elif args.cmd == "usage":
            from datetime import datetime, timezone

            from chalicelib import usage

            first, last = usage.window(args.first, args.last, datetime.now(timezone.utc).date())
            rows = [{"tenantId": t, **day} for t in dict.fromkeys(args.tenant) for day in usage.read(t, first, last)]
            if args.format == "csv":
                sys.stdout.write(usage.csv_text(rows))
            else:
                print(json.dumps({"from": first.isoformat(), "to": last.isoformat(), "days": rows,
                                  "totals": {t: {n: sum(r[n] for r in rows if r["tenantId"] == t)
                                                 for n in usage.COUNTERS} for t in dict.fromkeys(args.tenant)}},
                                 indent=2))
        elif args.cmd == "suspend":
            closed = tenants.set_status(runtime.env(), args.tenant, "suspended")
            wait = args.resweep_seconds
            if wait is None:
                from chalicelib.config import settings

                wait = settings().tenant_cache_seconds + 1
            if wait > 0:
                print(json.dumps({"suspended": args.tenant, "closed": closed, "resweepIn": wait}), flush=True)
                time.sleep(wait)
                closed += tenants.close_all_sockets(runtime.env(), args.tenant)
            print(json.dumps({"suspended": args.tenant, "closed": closed}))
        elif args.cmd == "resume":
            tenants.set_status(runtime.env(), args.tenant, "active")
            print(json.dumps({"resumed": args.tenant}))
        elif args.cmd == "show":
            t = models.Tenant.get(args.tenant)
            print(json.dumps(t.to_simple_dict(), indent=2, default=str))
        elif args.cmd == "review-backfill":
            from chalicelib.services import review

            print(json.dumps({"tenant": args.tenant, **review.backfill_queue(args.tenant, args.after, args.max)}))
        elif args.cmd == "search-backfill":
            from chalicelib import search_index

            print(json.dumps({"tenant": args.tenant, "written": search_index.backfill(args.tenant)}))
        elif args.cmd == "email-claims-backfill":
            from chalicelib import email_claims

            def progress(last: str, counts: dict) -> None:  # one line per page: where to resume from
                print(json.dumps({"tenant": args.tenant, "after": last, "users": counts["users"],
                                  "claimed": counts["claimed"], "conflicts": len(counts["conflicts"])}), flush=True)

            done = email_claims.backfill(args.tenant, after=args.after, page_size=max(1, args.page_size),
                                         progress=progress)
            print(json.dumps({"tenant": args.tenant, "done": True, **done}))
            if done["conflicts"]:
                print(f"error: conflict: {len(done['conflicts'])} users share an address another user holds; "
                      "change or remove their email (listed above)", file=sys.stderr)
                return 3
        elif args.cmd == "create-tables":
            models.create_tables()
            print(json.dumps({"tables": [m.Meta.table_name for m in models.ALL_MODELS]}))
    except ChatError as err:
        print(f"error: {err.code}: {err.message}", file=sys.stderr)
        return 2
    except models.Tenant.DoesNotExist:
        print(f"error: not_found: no tenant {args.tenant!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
