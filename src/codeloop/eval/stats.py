"""Significance of a speed-up: one-sided t-tests (paired on log ratios, or Welch), with Student's t CDF
from first principles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom: 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 for t > 0."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@dataclass(frozen=True)
class SpeedTest:
    """Is ``new`` faster than ``ratio`` x ``old``? A one-sided t-test's answer (paired or Welch)."""

    speedup: float  # mean(old) / mean(new); paired: the geometric mean of old_r / new_r
    t: float
    df: float
    p_value: float  # of H0: mean(new) >= ratio * mean(old)

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def mean_var(xs: Sequence[float]) -> tuple[float, float]:
    """The mean and the sample variance (n - 1)."""
    m = sum(xs) / len(xs)
    return m, sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def faster_test(old: Sequence[float], new: Sequence[float], ratio: float = 0.95) -> SpeedTest:
    """Welch's t = (mean(new) - r*mean(old)) / sqrt(var(new)/n_new + r^2 var(old)/n_old), with the
    Welch-Satterthwaite degrees of freedom; p = P(T <= t). ``ratio`` 0.95 asks for at least 5% faster."""
    if len(old) < 2 or len(new) < 2:
        raise ValueError("need at least two timings on each side")
    (m_old, v_old), (m_new, v_new) = mean_var(old), mean_var(new)
    s_new, s_old = v_new / len(new), ratio * ratio * v_old / len(old)
    diff = m_new - ratio * m_old
    speedup = m_old / m_new if m_new > 0 else math.inf
    if s_new + s_old == 0:  # no spread at all: the sign decides
        return SpeedTest(speedup, -math.inf if diff < 0 else math.inf, math.inf, 0.0 if diff < 0 else 1.0)
    t = diff / math.sqrt(s_new + s_old)
    df = (s_new + s_old) ** 2 / (s_new ** 2 / (len(new) - 1) + s_old ** 2 / (len(old) - 1))
    return SpeedTest(speedup, t, df, t_cdf(t, df))


def paired_faster_test(old: Sequence[float], new: Sequence[float], ratio: float = 0.95) -> SpeedTest:
    """Paired one-sided t-test on the per-round log ratios d_r = ln(new_r / old_r).

    H0: mean(d) >= ln(ratio) (``ratio`` 0.95: not at least 5% faster); t = (mean(d) - ln ratio) / (sd(d) / sqrt(n)),
    n - 1 degrees of freedom, p = P(T <= t). The speed-up is exp(-mean(d)), the geometric mean of old_r / new_r.
    Pairing is what makes this robust where Welch is not: a round's two timings share the machine's speed
    of that moment (on a shared VM it moves by 1.5x for seconds at a time), so it cancels in the ratio.
    """
    if len(old) != len(new):
        raise ValueError(f"paired timings need equal counts, got {len(old)} old and {len(new)} new")
    if len(old) < 2:
        raise ValueError("need at least two rounds")
    if min(old) <= 0 or min(new) <= 0:
        raise ValueError("timings must be positive")
    d = [math.log(n / o) for o, n in zip(old, new)]
    m, v = mean_var(d)
    speedup, diff = math.exp(-m), m - math.log(ratio)
    if v == 0:  # every round gave the same ratio: the sign decides
        return SpeedTest(speedup, -math.inf if diff < 0 else math.inf, math.inf, 0.0 if diff < 0 else 1.0)
    t = diff / math.sqrt(v / len(d))
    return SpeedTest(speedup, t, len(d) - 1, t_cdf(t, len(d) - 1))
