"""Markdown tables and percent cells shared by the report's sections."""

from __future__ import annotations


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table as lines, followed by an empty line."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def pct(value: float | None) -> str:
    """A fraction as a percent cell with two decimals; an em dash for none."""
    return "—" if value is None else f"{100 * value:.2f}"
