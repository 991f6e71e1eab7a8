"""Readable, coloured rendering of plans for the terminal, in the spirit of `terraform plan`, and apply summaries."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from shared_core.core.planning.plan import DATA_CHANGES, Plan, Step
from shared_core.core.wording import plural

if TYPE_CHECKING:
    from shared_core.services.apply import Event, StepOutcome

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


def render_plan(plan: Plan, console: Console | BatchedConsole) -> None:
    """Print the plan: header, model changes with reasons, steps by wave with ranges, a summary line."""
    summary = plan.summary
    base = "(nothing deployed)" if set(plan.base) == {"0"} else plan.base[:12]
    console.print(
        f"[bold]IronLayer plan[/bold] {plan.plan_id[:12]}  base {base} -> target {plan.target[:12]}"
        f"  as of {plan.as_of}"
    )
    console.print()
    if not plan.models:
        console.print("No model changes.")
    for change in plan.models:
        symbol, colour = _SYMBOLS[change.change]
        console.print(
            f"  [{colour}]{symbol} {escape(change.name):<40}[/{colour}] {change.change:<9} "
            f"[dim]{escape(change.reason)}[/dim]"
        )
    steps = plan.steps
    console.print()
    if steps:
        console.print(f"[bold]Steps[/bold] ({len(steps)} in {plural(summary.waves, 'wave')}, "
                      f"{plural(summary.batches, 'batch')})")
    direct: dict[str, str] = {c.name: c.change for c in plan.models if c.change in DATA_CHANGES}
    wave = -1
    for step in sorted(steps, key=lambda s: s.parallel_group):  # stable: topological within a wave
        if step.parallel_group != wave:
            wave = step.parallel_group
            console.print(f"  [bold]wave {wave}[/bold]")
        symbol, colour = _SYMBOLS.get(direct.get(step.model, ""), ("*", "cyan"))
        span = ""
        if step.start is not None:
            span = (
                f" {_when(step.start, step.batch)} -> {_when(step.end, step.batch)}"
                f" ({step.batches} {step.batch} {'batch' if step.batches == 1 else 'batches'}"
                f"{', from empty' if step.reset else ''})"
            )
        console.print(
            f"    [{colour}]{symbol} {escape(step.model):<38}[/{colour}] {step.run_type:<12}{span}"
            f"  [dim]{escape(step.reason)}[/dim]"
        )
    console.print()
    console.print(
        f"[bold]Plan:[/bold] {summary.added} to add, {summary.modified} to change, "
        f"{summary.removed} removed, {summary.cosmetic + summary.metadata} unchanged in data; "
        f"{plural(summary.models_to_run, 'model')} to run in {plural(summary.steps, 'step')}."
    )


class BatchedConsole:
    """Collects `print(text)` calls and hands them to a rich console as one text when flushed.

    rich renders each line of a multi-line text exactly as it renders that line printed alone, and
    one call costs a fraction of thousands (a 10,000-model plan prints 20,000 lines).
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._lines: list[str] = []

    def print(self, text: str = "") -> None:
        """Queue one line (rich markup) for the next `flush`."""
        self._lines.append(text)

    def flush(self) -> None:
        """Print the queued lines as one text."""
        if self._lines:
            text, self._lines = "\n".join(self._lines), []
            self._console.print(text)


def step_batch_count(step: Step) -> int:
    """How many batches (engine transactions) a step runs: its batches, or one for a non-incremental step."""
    return max(1, step.batches)


@contextmanager
def apply_progress(console: Console, steps: Sequence[Step]) -> Iterator[Event]:
    """A progress bar of an apply, counted in batches; yields the `on_event` callback that advances it.

    Events: `start` (a step begins), `batch` (one of its batches committed), `end` (the step ended; its
    batches that did not commit, skipped or failed, count as handled then).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    counts = {"done": 0, "failed": 0, "running": 0}
    advanced: dict[str, int] = {}
    with Progress(TextColumn("[bold]apply"), BarColumn(), MofNCompleteColumn(), TextColumn("batches;"),
                  TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("", total=sum(step_batch_count(step) for step in steps))

        def describe() -> str:
            return f"steps: done {counts['done']}  failed {counts['failed']}  running {counts['running']}"

        def on_event(kind: str, step: Step, outcome: StepOutcome | None) -> None:
            if kind == "start":
                counts["running"] += 1
            elif kind == "batch":
                advanced[step.step_id] = advanced.get(step.step_id, 0) + 1
                progress.advance(task)
            elif outcome is not None:
                if outcome.status not in ("skipped",) and counts["running"]:
                    counts["running"] -= 1
                counts["failed" if outcome.status in ("failed", "skipped") else "done"] += 1
                progress.advance(task, step_batch_count(step) - advanced.get(step.step_id, 0))
            progress.update(task, description=describe())

        yield on_event


def render_apply_summary(console: Console, outcomes: Sequence[StepOutcome], warehouse: Path | str) -> None:
    """Print the apply summary: a row per model, the failed tests, the step errors and the warehouse."""
    from rich.table import Table

    table = Table("model", "status", "batches", "rows", "time", "tests", box=None, title="Apply summary")
    by_model: dict[str, list[StepOutcome]] = {}
    for outcome in outcomes:
        by_model.setdefault(outcome.model, []).append(outcome)
    for model, items in by_model.items():
        statuses = {o.status for o in items}
        status = next(s for s in ("failed", "skipped", "success", "done") if s in statuses)
        colour = {"failed": "red", "skipped": "yellow", "success": "green", "done": "dim"}[status]
        tests = [t for o in items for t in o.tests]
        failed = [t for t in tests if not t[2]]
        test_text = f"{len(tests) - len(failed)}/{len(tests)} passed" if tests else "-"
        table.add_row(model, f"[{colour}]{status}[/{colour}]", str(sum(o.batches for o in items)),
                      str(sum(o.rows_written for o in items)), f"{sum(o.seconds for o in items):.2f}s", test_text)
    console.print()
    console.print(table)
    for outcome in outcomes:
        for test, severity, passed, failing in outcome.tests:
            if not passed:
                label = "[yellow]warn[/yellow]" if severity == "WARN" else "[red]block[/red]"
                console.print(f"{label} {outcome.model}: {test} failed ({failing} failing)")
    for outcome in outcomes:
        if outcome.error and outcome.status == "failed":
            console.print(f"[red]error[/red] {escape(outcome.model)}: {escape(outcome.error)}")  # text, not markup
    console.print(f"\nWarehouse: {warehouse}")
