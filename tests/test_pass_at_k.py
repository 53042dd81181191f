import math

import pytest

from codeloop.eval import estimate_pass_at_k, pass_at_k


def test_one_of_five_correct_gives_pass_at_1_of_a_fifth():
    assert pass_at_k(n=5, c=1, k=1) == pytest.approx(0.2)


def test_matches_the_binomial_form():
    # 1 - C(n-c, k) / C(n, k) with n=10, c=3, k=4: 1 - C(7,4)/C(10,4) = 1 - 35/210
    assert pass_at_k(n=10, c=3, k=4) == pytest.approx(1 - 35 / 210)


def test_fewer_wrong_samples_than_k_is_certain_success():
    assert pass_at_k(n=10, c=8, k=3) == 1.0


def test_no_correct_sample_is_zero():
    assert pass_at_k(n=200, c=0, k=100) == 0.0


def test_stable_for_large_n_where_binomials_overflow_floats():
    # C(2000, 1000) overflows a float; the product form does not. Exact: 1 - C(1990,1000)/C(2000,1000).
    exact = 1 - math.comb(1990, 1000) / math.comb(2000, 1000)
    assert pass_at_k(n=2000, c=10, k=1000) == pytest.approx(exact, rel=1e-12)


def test_k_above_n_is_rejected():
    with pytest.raises(ValueError, match="at least 10 samples"):
        pass_at_k(n=5, c=1, k=10)


def test_estimate_averages_over_tasks():
    assert estimate_pass_at_k([(4, 1), (4, 4)], k=1) == pytest.approx((0.25 + 1.0) / 2)
