"""The SQL of `custom_sql` quality tests: read from the header, guarded, and rendered for the engine.

A test is tenant SQL like the model body and passes the same guard (`guard.py`): one read-only query,
functions from the allow-list, and relations limited to `{model}` (the model's relation as the test sees
it), the model's `{{ ref() }}`s and its declared sources. What the engine runs is generated from the
parsed tree, never pasted: `{model}` is a token in the tree (a `{model}` inside a string stays text), and
the executor wraps the generated query in `SELECT count(*) FROM (...)`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, NamedTuple

from shared_core.core.errors import ModelError
from shared_core.core.project.headers import QualityTest, parse_sources, parse_tests, split_header
from shared_core.core.project.templating import bind_model_token, render_fragment
from shared_core.core.sql.guard import TreeGuard, parse_statement

if TYPE_CHECKING:
    from sqlglot import exp


class GuardedTest(NamedTuple):
    """A `custom_sql` test that passed the guard."""

    tree: exp.Expr  # refs as `__il_ref_N__`, `{model}` as `__il_model__`, placeholders as tokens
    relations: list[tuple[str, int]]  # external relations read, as (name, line)
    placeholders: tuple[str, ...]  # start_date / end_date, if the test uses them


def header_sources_and_tests(text: str, path: str) -> tuple[frozenset[str], list[tuple[QualityTest, int]]]:
    """The declared sources of a model file and its `custom_sql` tests with the line of `tests:`.

    Only these two header keys are read, so a file without a complete header (a bare query) works too.

    Raises:
        ModelError: an invalid `sources` or `tests` value, at its line.
    """
    sources: tuple[str, ...] = ()
    tests: list[tuple[QualityTest, int]] = []
    for key, value, line in split_header(text)[0]:
        def fail(message: str, line: int = line) -> ModelError:
            return ModelError(message, path=path, line=line)

        if key == "sources":
            sources = parse_sources(value, fail)
        elif key == "tests":
            tests = [(test, line) for test in parse_tests(value, fail) if test.kind == "custom_sql"]
    return frozenset(sources), tests


def guard_test(
    sql: str, *, path: str, line: int, refs: Mapping[str, int], sources: Collection[str] | None, model: str = "",
) -> GuardedTest:
    """Parse and guard the SQL of one `custom_sql` test.

    Args:
        sql: the test's argument, as written (with `{model}`).
        path: the model file; line: the line of its `tests:` header (every error names it).
        refs: the model's ref names by token number (a test may `{{ ref() }}` what the model refs).
        sources: the declared sources; None while planning (undeclared relations are returned, not refused).
        model: the model's name, for messages.

    Returns:
        The guarded tree, the external relations it reads and the placeholders it uses.

    Raises:
        ModelError: the test does not parse; UnsafeSqlError: it breaks a rule of the guard.
    """
    fragment = render_fragment(bind_model_token(sql), path, line=line, refs=refs)
    rendered = fragment.rendered
    tree = parse_statement(rendered, path, subject="test", line=line)
    guard = TreeGuard(path=path, sql=rendered, refs=len(refs), sources=sources, model=model, subject="test",
                      line=line)
    guard.check(tree)
    return GuardedTest(tree, guard.relations, fragment.placeholders)
