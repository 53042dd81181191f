"""The speed-up significance test, with worked numbers."""

from __future__ import annotations

import math

import pytest

from codeloop.eval.stats import betainc, faster_test, t_cdf


def test_t_cdf_with_one_degree_of_freedom_is_the_cauchy_cdf():
    assert t_cdf(1.0, 1) == pytest.approx(0.5 + math.atan(1.0) / math.pi)  # = 0.75


def test_t_cdf_with_two_degrees_of_freedom_has_a_closed_form():
    assert t_cdf(-2.0, 2) == pytest.approx(0.5 - 2.0 / (2 * math.sqrt(2 + 4)))  # = 0.0917517


def test_t_cdf_is_one_half_at_zero():
    assert t_cdf(0.0, 7.3) == pytest.approx(0.5)


def test_t_cdf_matches_numerical_integration_of_the_density():
    df, t = 5.882353, -1.897367

    def pdf(x):
        return math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi) * (1 + x * x / df) ** (-(df + 1) / 2)

    lo, steps = -400.0, 200_000  # Simpson's rule from far in the left tail
    h = (t - lo) / steps
    area = pdf(lo) + pdf(t) + sum((4 if i % 2 else 2) * pdf(lo + i * h) for i in range(1, steps))
    assert t_cdf(t, df) == pytest.approx(area * h / 3, abs=2e-4)


def test_betainc_symmetry():
    assert betainc(2.5, 0.5, 0.3) == pytest.approx(1 - betainc(0.5, 2.5, 0.7))


def test_welch_statistic_and_degrees_of_freedom_by_hand():
    # new = [1..5] (mean 3, var 2.5), old = [2,4,..,10] (mean 6, var 10), ratio 1:
    # t = (3 - 6) / sqrt(2.5/5 + 10/5) = -1.897367; df = 2.5^2 / (0.5^2/4 + 2^2/4) = 5.882353
    r = faster_test(old=[2, 4, 6, 8, 10], new=[1, 2, 3, 4, 5], ratio=1.0)
    assert (r.t, r.df, r.speedup) == (pytest.approx(-1.897367, abs=1e-6), pytest.approx(5.882353, abs=1e-6), 2.0)


def test_a_clear_speedup_is_significant():
    assert faster_test(old=[10.0, 10.2, 9.9, 10.1], new=[5.0, 5.1, 4.9, 5.2]).significant()


def test_a_three_percent_gain_is_not_a_five_percent_speedup():
    assert not faster_test(old=[10.0, 10.1, 9.9, 10.0], new=[9.7, 9.8, 9.6, 9.7]).significant()


def test_noise_alone_is_not_significant():
    assert not faster_test(old=[10, 12, 8, 11, 9], new=[9, 13, 10, 8, 11]).significant()
