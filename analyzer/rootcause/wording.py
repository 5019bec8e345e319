"""How diagnoses read: suspect lists, percentages, and the ambiguity discount.

Kept apart from the engine so the phrasing of evidence sentences is in one place.
"""

from __future__ import annotations


def describe(names: tuple[str, ...]) -> str:
    """A suspect class for a sentence: every member up to three, then a count."""
    if len(names) <= 3:
        return " = ".join(names)
    return f"{names[0]} (and {len(names) - 1} components probes cannot tell from it)"


def percent(ratio: float) -> str:
    """Loss ratios from 0.01% to 100% with the digits that matter."""
    value = ratio * 100.0
    if value >= 10 or value == 0:
        return f"{value:.0f}%"
    if value >= 1:
        return f"{value:.1f}%"
    return f"{value:.2f}%"


def ambiguity(class_size: int) -> float:
    """Confidence factor of a suspect class: each extra member probes cannot split costs a quarter."""
    return 1.0 / (1.0 + 0.25 * (class_size - 1))
