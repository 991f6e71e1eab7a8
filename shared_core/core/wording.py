"""Plural-aware counts for messages: `1 batch`, `2 batches`, `0 models`."""

from __future__ import annotations

_IRREGULAR = {"batch": "batches", "is": "are", "was": "were", "entry": "entries", "this": "these"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`count` followed by `noun` in the number it needs; `many` is the plural when it is not regular.

    >>> plural(1, "model"), plural(2, "batch"), plural(0, "wave"), plural(3, "entry"), plural(2, "child", "children")
    ('1 model', '2 batches', '0 waves', '3 entries', '2 children')
    """
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {many or _IRREGULAR.get(noun) or noun + 's'}"
