"""Readable, coloured rendering of plans for the terminal, in the spirit of `terraform plan`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

_SYMBOLS = {
    "added": ("+", "green"),
    "modified": ("~", "yellow"),
    "removed": ("-", "red"),
    "cosmetic": ("=", "dim"),
    "metadata": ("=", "dim"),
}


def _when(value: str | None, batch: str | None) -> str:
    if value is None:
        return ""
    return value[:10] if batch in ("day", "month") else value.replace("T", " ").replace(":00Z", "Z")


def render_plan(plan: dict[str, Any], console: Console) -> None:
    """Print the plan: header, model changes with reasons, steps by wave with ranges, a summary line."""
    summary = plan["summary"]
    base = "(nothing deployed)" if set(plan["base"]) == {"0"} else plan["base"][:12]
    console.print(
        f"[bold]IronLayer plan[/bold] {plan['plan_id'][:12]}  base {base} -> target {plan['target'][:12]}"
        f"  as of {plan['as_of']}"
    )
    console.print()
    if not plan["models"]:
        console.print("No model changes.")
    for change in plan["models"]:
        symbol, colour = _SYMBOLS[change["change"]]
        console.print(
            f"  [{colour}]{symbol} {escape(change['name']):<40}[/{colour}] {change['change']:<9} "
            f"[dim]{escape(change['reason'])}[/dim]"
        )
    steps = plan["steps"]
    console.print()
    if steps:
        console.print(f"[bold]Steps[/bold] ({len(steps)} in {summary['waves']} waves, {summary['batches']} batches)")
    direct = {c["name"]: c["change"] for c in plan["models"] if c["change"] in ("added", "modified")}
    wave = -1
    for step in sorted(steps, key=lambda s: s["parallel_group"]):  # stable: topological within a wave
        if step["parallel_group"] != wave:
            wave = step["parallel_group"]
            console.print(f"  [bold]wave {wave}[/bold]")
        symbol, colour = _SYMBOLS.get(direct.get(step["model"], ""), ("*", "cyan"))
        span = ""
        if step["start"] is not None:
            span = (
                f" {_when(step['start'], step['batch'])} -> {_when(step['end'], step['batch'])}"
                f" ({step['batches']} {step['batch']} batch{'es' if step['batches'] != 1 else ''}"
                f"{', from empty' if step['reset'] else ''})"
            )
        console.print(
            f"    [{colour}]{symbol} {escape(step['model']):<38}[/{colour}] {step['run_type']:<12}{span}"
            f"  [dim]{escape(step['reason'])}[/dim]"
        )
    console.print()
    console.print(
        f"[bold]Plan:[/bold] {summary['added']} to add, {summary['modified']} to change, "
        f"{summary['removed']} removed, {summary['cosmetic'] + summary['metadata']} unchanged in data; "
        f"{summary['models_to_run']} models to run in {summary['steps']} steps."
    )
