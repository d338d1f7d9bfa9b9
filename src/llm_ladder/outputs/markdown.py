"""Markdown pieces the summary and its sections share: a table, and untrusted text as one cell."""

from __future__ import annotations

import html


def md_table(columns: tuple[str, ...], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + [
        "| " + " | ".join(c) + " |" for c in body
    ]


def md_cell(text: str) -> str:
    """Untrusted text as one Markdown table cell: HTML escaped (no tags, no links rendered), pipes escaped, line
    breaks kept as <br>."""
    escaped = html.escape(text.strip(), quote=False).replace("|", "\\|")
    return "<br>".join(escaped.splitlines())
