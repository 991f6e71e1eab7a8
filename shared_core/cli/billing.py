"""`ironlayer usage` and `ironlayer billing customer|send`: this month's usage against the tier, and the operator's
Stripe commands.

`usage` prints the tenant's tier, its subscription's status, the steps executed this month against the monthly
quota with a bar, the plans generated, the compute seconds and what is still unsent to Stripe (`--json` for the
same as JSON). `billing customer` maps a Stripe customer to a tenant (its usage is then billed to it);
`billing send` sends the pending usage now instead of waiting for the billing timer.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from shared_core.cli._runtime import CommandParsers, console, examples, settings, tenant, with_store

if TYPE_CHECKING:
    from shared_core.core.billing import UsageKind
    from shared_core.ports import StateStore
    from shared_core.services.billing import SendReport, UsageReport

EXIT_OK, EXIT_FAILED = 0, 1
BAR_WIDTH = 40


def add_commands(commands: CommandParsers) -> None:
    usage = commands.add_parser("usage", help="this month's usage against the tier's quota",
                                epilog=examples("ironlayer usage", "ironlayer usage --json"))
    usage.add_argument("--json", action="store_true", help="print JSON")
    billing = commands.add_parser("billing", help="Stripe: map customers to tenants, send metered usage now",
                                  epilog=examples("ironlayer billing customer cus_Q2x8Yy --tenant acme",
                                                  "ironlayer billing send --tenant acme"))
    verbs = billing.add_subparsers(dest="billing_action", required=True)
    customer = verbs.add_parser("customer", help="bill a tenant's usage to a Stripe customer")
    customer.add_argument("customer", help="the Stripe customer ID, cus_...")
    customer.add_argument("--tenant", help="the tenant (default IRONLAYER_TENANT)")
    send = verbs.add_parser("send", help="send the pending usage to Stripe now (needs IRONLAYER_STRIPE_API_KEY)")
    send.add_argument("--tenant", action="append", help="only this tenant's usage (repeatable; default: every tenant)")


def usage_bar(used: int, quota: int | None, width: int = BAR_WIDTH) -> str:
    """A text bar of `used` out of `quota` (None: unlimited), with the percentage.

    >>> usage_bar(250, 1000, 20)
    '[#####...............]  25%'
    >>> usage_bar(1200, 1000, 10), usage_bar(5, None, 10)
    ('[##########] 120%', '[..........] unlimited')
    """
    if quota is None:
        return f"[{'.' * width}] unlimited"
    share = used / quota if quota else 1.0
    filled = min(width, round(share * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {round(share * 100):>3}%"


def cmd_usage(args: argparse.Namespace) -> int:
    from shared_core.services.billing import usage_report

    who = tenant()

    async def fetch(store: StateStore) -> UsageReport:
        return await usage_report(store, who, now=datetime.now(UTC))

    report = with_store(fetch)
    granted, used = report.entitlement, report.usage
    tier = granted.tier
    if args.json:
        print(json.dumps({"tenant_id": who, "tier": tier.name, "subscription_status": granted.status,
                          "blocked": granted.blocked, "monthly_steps": tier.monthly_steps,
                          "concurrency": tier.concurrency, "customer": report.customer,
                          "usage": {**used, "since": used["since"].isoformat()}}, indent=2, sort_keys=True))
        return EXIT_OK
    out = console()
    quota = "unlimited" if tier.monthly_steps is None else f"{tier.monthly_steps:,}"
    out.print(f"Usage of {who} since {used['since']:%Y-%m-%d} ({tier.name} tier, subscription "
              f"{granted.status.replace('_', ' ')})", highlight=False)
    out.print(f"  steps    {usage_bar(used['steps'], tier.monthly_steps)}  {used['steps']:,} of {quota}",
              highlight=False, markup=False)
    out.print(f"  plans    {used['plans']:,} generated", highlight=False)
    out.print(f"  compute  {used['compute_seconds']:,} engine seconds", highlight=False)
    out.print(f"  at once  {tier.concurrency} plan{'s' if tier.concurrency != 1 else ''}", highlight=False)
    if used["pending"] or used["expired"]:
        out.print(f"  unsent   {used['pending']:,} pending, {used['expired']:,} too old for Stripe", highlight=False)
    if report.customer is None:
        out.print("  billing  no Stripe customer: usage is recorded, not billed", highlight=False)
    if granted.blocked:
        out.print(f"blocked: {granted.blocked}", highlight=False, markup=False)
    return EXIT_OK


def cmd_billing(args: argparse.Namespace) -> int:
    if args.billing_action == "customer":
        return _customer(args)
    return _send(args)


def _customer(args: argparse.Namespace) -> int:
    from shared_core.services.billing import map_customer

    who = args.tenant or tenant()

    async def run(store: StateStore) -> bool:
        return await map_customer(store, who, args.customer, by="command")

    added = with_store(run)
    print(f"{args.customer} {'now pays' if added else 'already pays'} for tenant {who}")
    return EXIT_OK


def _send(args: argparse.Namespace) -> int:
    from shared_core.adapters.stripe.meters import StripeMeterClient
    from shared_core.core.errors import SettingsError
    from shared_core.services.billing import send_usage

    config = settings()
    if not config.stripe_api_key:
        raise SettingsError("IRONLAYER_STRIPE_API_KEY is not set; set the Stripe secret key to send usage")
    client = StripeMeterClient(config.stripe_api_key, api_base=config.stripe_api_base)
    names: dict[UsageKind, str] = {"plan_generated": config.stripe_meter_plans,
                                   "step_executed": config.stripe_meter_steps,
                                   "compute_seconds": config.stripe_meter_compute}

    async def run(store: StateStore) -> SendReport:
        return await send_usage(store, client, names, now=datetime.now(UTC),
                                tenants=set(args.tenant) if args.tenant else None)

    report = with_store(run)
    print(f"sent {report.sent}, to retry {report.retried}, too old {report.expired}, rejected {report.rejected}")
    for error in report.errors[:5]:
        print(f"  {error}")
    return EXIT_FAILED if report.retried or report.rejected else EXIT_OK


COMMANDS = {"usage": cmd_usage, "billing": cmd_billing}
