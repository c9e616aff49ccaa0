"""What the benchmark scripts share (they import it as ``common``: a script's own folder is
on ``sys.path``)."""

from __future__ import annotations

from collections.abc import Callable


def interleaved(rates: dict[str, Callable[[], float]],
                rounds: int) -> tuple[dict[str, float], dict[str, list[float]]]:  # fmt: skip
    """Measure each rate once per round, in turn (A B C A B C …), so that a slow spell of
    the shared machine hits them all alike. Returns each one's median and all its values."""
    values: dict[str, list[float]] = {name: [] for name in rates}
    for _ in range(rounds):
        for name, rate in rates.items():
            values[name].append(rate())
    return {k: sorted(v)[len(v) // 2] for k, v in values.items()}, values
