"""The unbiased pass@k estimator of Chen et al. (2021)."""

from __future__ import annotations

from collections.abc import Iterable
from math import prod


def pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k = 1 - C(n-c, k) / C(n, k), for n samples of which c are correct.

    Computed in the stable product form 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms the huge
    binomials. With fewer than k incorrect samples every k-subset holds a correct one: 1.0.
    """
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1 (n={n}, c={c}, k={k})")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per task, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def estimate_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean pass@k over tasks, given ``(n, c)`` per task."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("no tasks to average over")
    return sum(values) / len(values)
