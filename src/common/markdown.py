"""Formatting for the markdown reports every phase writes: one way to show a share, a time, an interval."""

from __future__ import annotations

from collections.abc import Sequence


def pct(x: float | None, digits: int = 1) -> str:
    """0.4567 -> '45.7%'; None -> 'n/a'."""
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def seconds(x: float | None) -> str:
    """1.234 -> '1.23 s'; None -> 'n/a'."""
    return "n/a" if x is None else f"{x:.2f} s"


def number(x: float | None, digits: int = 2) -> str:
    """0.12345 -> '0.12'; None -> 'n/a'."""
    return "n/a" if x is None else f"{x:.{digits}f}"


def interval(ci: Sequence[float] | None) -> str:
    """A 95% interval of shares, ' (a–b)', or '' when there is none."""
    return f" ({pct(ci[0])}–{pct(ci[1])})" if ci else ""
