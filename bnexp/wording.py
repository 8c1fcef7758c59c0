"""Small pieces of English shared by every message, figure and report."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """'1 run', '2 runs', '0 runs'; `many` for irregular nouns ('1 batch', '3 batches')."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"
