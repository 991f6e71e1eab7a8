"""What `terraform fmt` would change in an HCL file, for a repository where no Terraform binary can run.

It re-derives the layout rules of `terraform fmt` (hclwrite's formatter) that hand-written files get wrong:
- indentation: two spaces per level, a level being a line that leaves brackets open (`{`, `[`, `(`), however
  many it opens; a line that closes brackets is dedented first;
- alignment: in a run of consecutive lines that each assign a whole value (`name = value`, the value closing
  every bracket it opens), the `=` signs line up one space after the longest name; a blank line, a comment
  line or a line that opens a multi-line value ends the run;
- no tabs, no trailing spaces, no two blank lines in a row, one newline at the end, single spaces between
  tokens outside strings and comments.
Trailing comments after code are reported rather than aligned (the files here have none). Strings are read
as whole tokens, `${...}` interpolations (with strings nested in them) included.
"""

from __future__ import annotations

from dataclasses import dataclass

_OPEN, _CLOSE = "{[(", "}])"


@dataclass(frozen=True)
class Line:
    """One source line, split into the code before a top-level `=` (if any) and after it."""

    number: int
    text: str
    net_brackets: int  # opened minus closed on this line, outside strings and comments
    assign_at: int | None  # index of a `=` whose value is a whole expression, else None
    comment_only: bool
    trailing_comment: bool


def _skip_string(text: str, start: int) -> int:
    """Index just past the string literal opening at `start` (a `"`), `${...}` with nested strings included."""
    i, depth = start + 1, 0
    while i < len(text):
        char = text[i]
        if depth == 0:
            if char == "\\":
                i += 2
                continue
            if char == '"':
                return i + 1
            if text.startswith("${", i):
                depth, i = 1, i + 2
                continue
        else:
            if char == '"':
                i = _skip_string(text, i)
                continue
            depth += char == "{"
            depth -= char == "}"
        i += 1
    return i


def scan(number: int, text: str) -> Line:
    """Bracket balance, the assignment and comments of one line.

    >>> scan(1, '  name = "a{b"').assign_at
    7
    >>> scan(1, '  tags = merge(var.tags, {').assign_at is None
    True
    >>> scan(1, '  ok = a == b').assign_at
    5
    """
    net, first_equal, brackets_after, i = 0, None, 0, 0
    comment_only = text.lstrip().startswith(("#", "//"))
    trailing_comment = False
    code = text.strip()
    while i < len(text) and not comment_only:
        char = text[i]
        if char == '"':
            i = _skip_string(text, i)
            continue
        if char == "#" or text.startswith("//", i):
            trailing_comment = bool(text[:i].strip())
            break
        change = (char in _OPEN) - (char in _CLOSE)
        net += change
        if first_equal is not None:
            brackets_after += change
        if char == "=" and first_equal is None and text[i - 1] not in "=!<>" and text[i + 1 : i + 2] not in ("=", ">"):
            first_equal = i
        i += 1
    whole_value = first_equal is not None and brackets_after == 0 and code.index("=") > 0
    return Line(number, text, net, first_equal if whole_value else None, comment_only, trailing_comment)


def _expected_indents(lines: list[Line]) -> dict[int, int]:
    """Line number -> the indentation `terraform fmt` gives it."""
    indents: list[int] = []
    expected = {}
    for line in lines:
        if not line.text.strip():
            continue
        if line.net_brackets < 0:
            closed = -line.net_brackets
            while closed > 0 and indents:
                if closed >= indents[-1]:
                    closed -= indents.pop()
                else:
                    indents[-1] -= closed
                    closed = 0
        expected[line.number] = 2 * len(indents)
        if line.net_brackets > 0:
            indents.append(line.net_brackets)
    return expected


def _spacing_problems(line: Line) -> list[str]:
    """Runs of spaces between tokens, outside strings and comments (alignment before `=` excepted)."""
    text, i, problems = line.text.rstrip(), len(line.text) - len(line.text.lstrip()), []
    while i < len(text):
        if text[i] == '"':
            i = _skip_string(text, i)
            continue
        if text[i] == "#" or text.startswith("//", i):
            break
        if text.startswith("  ", i):
            end = i
            while end < len(text) and text[end] == " ":
                end += 1
            if line.assign_at is None or end != line.assign_at:
                problems.append(f"line {line.number}: more than one space at column {i + 1}")
            i = end
            continue
        i += 1
    return problems


def fmt_problems(source: str) -> list[str]:
    """What `terraform fmt` would change in `source`, one line each (empty: it is canonical).

    >>> fmt_problems('a = 1\\nbb = 2\\n')
    ['line 1: `=` at column 3, terraform fmt puts it at column 4']
    >>> fmt_problems('x {\\n  a  = 1\\n  bb = 2\\n}\\n')
    []
    """
    problems = []
    if not source.endswith("\n") or source.endswith("\n\n"):
        problems.append("the file must end with exactly one newline")
    raw_lines = source.split("\n")[:-1] if source.endswith("\n") else source.split("\n")
    lines = [scan(number, text) for number, text in enumerate(raw_lines, start=1)]
    indents = _expected_indents(lines)
    blank_run = 0
    for line in lines:
        if "\t" in line.text:
            problems.append(f"line {line.number}: tab")
        if line.text != line.text.rstrip():
            problems.append(f"line {line.number}: trailing spaces")
        blank_run = blank_run + 1 if not line.text.strip() else 0
        if blank_run == 2:
            problems.append(f"line {line.number}: two blank lines in a row")
        if line.trailing_comment:
            problems.append(f"line {line.number}: trailing comment (put it on a line of its own)")
        if line.number in indents:
            actual = len(line.text) - len(line.text.lstrip(" "))
            if actual != indents[line.number]:
                problems.append(f"line {line.number}: indented {actual}, terraform fmt indents {indents[line.number]}")
        problems.extend(_spacing_problems(line))
    run: list[tuple[int, int, int]] = []  # (line number, column of its `=`, width of the name before it)
    for line in [*lines, Line(0, "", 0, None, False, False)]:
        if line.assign_at is not None:
            run.append((line.number, line.assign_at, len(line.text[: line.assign_at].rstrip())))
            continue
        if run:
            column = max(width for _, _, width in run) + 1
            problems.extend(f"line {number}: `=` at column {at + 1}, terraform fmt puts it at column {column + 1}"
                            for number, at, _ in run if at != column)
        run = []
    return problems
