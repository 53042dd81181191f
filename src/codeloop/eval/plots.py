"""Per-iteration metrics drawn as PNG line plots (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def plot_metrics(rows: Sequence[dict], x: str, ys: Sequence[str], path: str | Path, title: str = "") -> Path:
    """One line per metric in ``ys`` against ``x``; rows lacking a metric are skipped for that line."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for y in ys:
        points = [(r[x], r[y]) for r in rows if y in r and r[y] is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=y)
    ax.set_xlabel(x)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
