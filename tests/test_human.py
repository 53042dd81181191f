"""Crowd line labels aggregated by Bayes (codeloop.feedback.human; the cRLHF paper's eqs. 7 and 8)."""

from __future__ import annotations

import random

import pytest

from codeloop.feedback.human import (CORRECT, WRONG, Reliabilities, SimulatedCrowd, aggregate, check_labels, check_verdict, code_lines,
                                     counted_lines, crowd_score, em_reliabilities, fit_reliabilities, line_share, posterior,
                                     program_probability, reference_line_labels, score_program, verdict_prior)


def test_posterior_is_bayes_rule_with_independent_annotators():
    # a says correct (p .8), b says wrong (p .6): .8·.4 / (.8·.4 + .2·.6) = .32/.44
    assert posterior({"a": 1, "b": -1}, {"a": 0.8, "b": 0.6}) == pytest.approx(0.32 / 0.44)
    assert posterior({}, {}) == 0.5 and posterior({}, {}, prior=0.8) == pytest.approx(0.8)
    # an annotator at 1/2 carries no evidence; one below 1/2 is evidence for the opposite
    assert posterior({"a": 1, "c": -1}, {"a": 0.8, "c": 0.5}) == pytest.approx(0.8)
    assert posterior({"d": 1}, {"d": 0.3}) == pytest.approx(0.3)


def test_eq8_moves_a_reliability_by_the_certainty_of_the_answer():
    rel = Reliabilities(nu=0.7, step=1.0)
    assert rel.update("a", agreed=True, certainty=0.9) == pytest.approx(0.63 / 0.66)  # .7·.9/(.7·.9 + .3·.1)
    assert rel.update("b", agreed=False, certainty=0.9) == pytest.approx(0.07 / 0.34)  # .7·.1/(.7·.1 + .3·.9)
    assert rel.update("c", agreed=True, certainty=0.5) == pytest.approx(0.7)  # an unsure answer teaches nothing
    half = Reliabilities(nu=0.7, step=0.5)
    assert half.update("a", True, 0.9) == pytest.approx(1 / (1 + 3 / 7 / 3))  # logit .7 + .5·logit .9: odds 7/3·3
    # logit(1) is infinite: a honeypot's certainty is capped and a reliability stays inside the bounds
    capped = Reliabilities(nu=0.7, max_certainty=0.99)
    for _ in range(20):
        capped.update("a", True, 1.0)
        capped.update("b", False, 1.0)
    assert capped["a"] == pytest.approx(0.99) and capped["b"] == pytest.approx(0.01) and capped["new"] == 0.7


def test_a_program_scores_its_share_of_lines_called_correct():
    rel = Reliabilities(nu=0.8, learn_prior=False)
    labels = {"a": [1, 1, -1, 1], "b": [1, -1, -1, 1], "c": [1, 1, 1, -1]}
    verdicts = score_program(labels, rel, update=False)
    # equal reliabilities: the vote; .8^3/(.8^3+.2^3) for 3-0, .8 for 2-1
    assert verdicts.correct == [True, True, False, True]
    assert verdicts.probabilities[0] == pytest.approx(0.512 / 0.52) and verdicts.probabilities[1] == pytest.approx(0.8)
    assert verdicts.score == 0.75 and rel.p == {}
    assert aggregate({}, rel).score == 0.0


ST_PROGRAM = """FUNCTION solve : DINT
VAR_INPUT
    xs : ARRAY[1..12] OF DINT;
END_VAR
VAR x : DINT; END_VAR
(* the sum of 1..3 *)
variable_count := 0;
FOR x := 1 TO 3 DO
    solve := solve + x;
END_FOR;
end_function
FUNCTION_BLOCK Counter
VAR_OUTPUT q : INT;
END_VAR
q := q + 1;
END_FUNCTION_BLOCK

PROGRAM Main
VAR
    c : Counter;
"""


def test_st_declaration_lines_are_unit_headers_ends_and_var_blocks():
    from codeloop.languages.st import declaration_lines

    lines = code_lines(ST_PROGRAM)
    flags = declaration_lines(lines)
    assert [line for line, d in zip(lines, flags) if not d] == [
        "(* the sum of 1..3 *)", "variable_count := 0;", "FOR x := 1 TO 3 DO", "    solve := solve + x;", "END_FOR;",
        "q := q + 1;"]  # a one-line VAR block closes itself; lower case counts; a block left open runs to the end


def test_st_declarations_are_judged_outside_comments_and_strings():
    from codeloop.languages.st import declaration_lines

    lines = ["FUNCTION f : INT", "(* inputs *) VAR_INPUT", "(* END_VAR is not here *) a : INT;", "END_VAR",
             "(* a (* nested *) comment", "VAR", "that spans lines *)", "f := a; // VAR", "s := 'VAR'; VAR_INPUT",
             "/* END_FUNCTION", "*) */ f := f + 1;", "END_FUNCTION"]
    assert declaration_lines(lines) == [True, True, True, True, False, False, False, False, False, False, False, True]
    assert declaration_lines(["(* never closed", "VAR x : INT; END_VAR"]) == [False, False]


def test_statement_scores_leave_st_declarations_out_and_python_whole():
    program = code_lines(ST_PROGRAM)
    counted = counted_lines(program, "st", "statements")
    assert sum(counted) == 6 and counted_lines(program, "st", "all") == [True] * len(program)
    assert counted_lines(["def f(x):", "    return x"], "python", "statements") == [True, True]
    with pytest.raises(ValueError, match="score_lines: expected one of all, statements, got 'body'"):
        counted_lines(program, "st", "body")
    # a wrong program whose only wrong line is in its body: the declarations no longer dilute it
    correct = [True] * len(program)
    correct[program.index("    solve := solve + x;")] = False
    assert line_share(correct) == pytest.approx(1 - 1 / len(program))
    assert line_share(correct, counted) == pytest.approx(5 / 6)
    assert line_share([True, True], [False, False]) == 0.0 and line_share([]) == 0.0


def test_honeypots_teach_reliabilities_and_the_prior():
    rel = Reliabilities(nu=0.7, step=0.1)
    gold = [1, 1, 1, -1]
    score_program({"right": [1, 1, 1, -1], "wrong": [-1, -1, -1, 1]}, rel, gold=gold)
    assert rel["right"] > 0.7 > rel["wrong"]
    assert rel.prior == pytest.approx((3 + 1) / (4 + 2))
    with pytest.raises(ValueError, match="honeypot answers: 3 labels for 4"):
        score_program({"a": [1, 1, 1, 1]}, rel, gold=[1, 1, 1])


def test_labels_are_checked_one_per_line():
    assert check_labels([1, -1], 2) == [1, -1]
    with pytest.raises(ValueError, match="x: 1 labels for 2 non-blank lines"):
        check_labels([1], 2, "x")
    for bad in (0, 2, True, "1"):
        with pytest.raises(ValueError, match="a label is 1"):
            check_labels([1, bad], 2)
    with pytest.raises(ValueError, match="different numbers"):
        aggregate({"a": [1], "b": [1, 1]}, {"a": 0.7, "b": 0.7})


def _crowd_rows(reliability: dict[str, float], lines: int, seed: int, p_correct: float = 0.7):
    rng = random.Random(seed)
    truth = [CORRECT if rng.random() < p_correct else WRONG for _ in range(lines)]
    labels = SimulatedCrowd(reliability, seed=seed + 1000).annotate(truth)  # its own stream, not the truth's
    return [({a: v[j] for a, v in labels.items()}, t) for j, t in enumerate(truth)]


def test_the_simulated_crowd_is_as_reliable_as_it_is_told():
    rows = _crowd_rows({"a": 0.9, "b": 0.6}, 20000, seed=1)
    for a, p in (("a", 0.9), ("b", 0.6)):
        assert sum(v[a] == t for v, t in rows) / len(rows) == pytest.approx(p, abs=0.01)
    picked = SimulatedCrowd({"a": 1.0, "b": 1.0, "c": 1.0}, seed=0).annotate([1, -1], per_program=2)
    assert len(picked) == 2 and all(v == [1, -1] for v in picked.values())
    with pytest.raises(ValueError, match="annotator 'x'"):
        SimulatedCrowd({"x": 1.5})


def test_simulated_verdicts_on_whole_programs_are_right_at_the_annotators_rate_and_leave_line_labels_alone():
    people = SimulatedCrowd({"a": 0.9, "b": 0.6}, seed=3)
    votes = [people.judge(j % 2 == 0, ["a", "b"]) for j in range(20000)]
    for a, p in (("a", 0.9), ("b", 0.6)):
        assert sum(v[a] == (CORRECT if j % 2 == 0 else WRONG) for j, v in enumerate(votes)) / len(votes) == pytest.approx(p, abs=0.01)
    plain, judging = SimulatedCrowd({"a": 0.7}, seed=5), SimulatedCrowd({"a": 0.7}, seed=5)
    first = [plain.annotate([1, 1, -1, 1]) for _ in range(50)]
    second = []
    for _ in range(50):
        second.append(judging.annotate([1, 1, -1, 1]))
        judging.judge(False, ["a"])
    assert first == second


def test_a_crowd_score_is_the_line_share_the_verdict_or_their_mean():
    assert crowd_score(0.75, None) == 0.75 and crowd_score(0.75, 0.2, "lines") == 0.75
    assert crowd_score(0.75, 0.25, "verdict") == 0.25 and crowd_score(0.75, 0.25, "lines+verdict") == 0.5
    with pytest.raises(ValueError, match="needs verdicts on the whole program"):
        crowd_score(0.75, None, "verdict")
    with pytest.raises(ValueError, match="crowd_score: expected one of lines, verdict, lines\\+verdict, got 'both'"):
        crowd_score(0.75, 0.5, "both")
    assert check_verdict(1) == 1 and check_verdict(-1) == -1 and check_verdict(None) is None
    for bad in (0, 2, True, 1.0, "1"):
        with pytest.raises(ValueError, match="verdict: 1 .* -1 .* or null, got"):
            check_verdict(bad)


def test_the_verdict_prior_estimated_by_em_recovers_the_share_of_correct_programs():
    crowd = {"a": 0.9, "b": 0.8, "c": 0.7}
    people = SimulatedCrowd(crowd, seed=11)
    rng = random.Random(4)
    for share in (0.2, 0.5, 0.8):
        votes = [people.judge(rng.random() < share, list(crowd)) for _ in range(4000)]
        assert verdict_prior(votes, crowd) == pytest.approx(share, abs=0.03)
    # a fixed point: the estimate is the mean posterior it implies
    votes = [people.judge(rng.random() < 0.2, list(crowd)) for _ in range(500)]
    prior = verdict_prior(votes, crowd)
    assert sum(program_probability(v, crowd, prior) for v in votes) / len(votes) == pytest.approx(prior, abs=1e-6)
    assert verdict_prior([], crowd) == 0.5 and verdict_prior([{}, {}], crowd) == 0.5
    assert verdict_prior([{"a": 1}] * 10, {"a": 0.99}) == 0.99  # kept off 0 and 1
    # two yes against one no is worth less when most programs fail
    mixed = {"a": 1, "b": 1, "c": -1}
    assert program_probability(mixed, crowd, 0.2) < program_probability(mixed, crowd) == pytest.approx(posterior(mixed, crowd))


def test_honeypot_agreement_rates_are_the_counting_estimate():
    gold = [({"a": 1, "b": 1}, 1), ({"a": 1, "b": -1}, 1), ({"a": -1, "b": -1}, -1), ({"a": -1, "b": -1}, 1)]
    est = em_reliabilities(gold)
    # a right on 3 of 4, b on 2 of 4; 3 of 4 answers correct; each (k + 1) / (n + 2)
    assert est.reliability == pytest.approx({"a": 4 / 6, "b": 3 / 6}) and est.prior == pytest.approx(4 / 6)
    assert est.rounds == 0


def test_em_anchored_on_honeypots_survives_a_mostly_adversarial_crowd():
    """Most of this crowd is wrong more often than right: the vote is wrong, while honeypots tell the
    aggregate whom to believe (and whom to invert)."""
    crowd = {"good1": 0.9, "good2": 0.85, "bad1": 0.35, "bad2": 0.3, "bad3": 0.35}
    gold = _crowd_rows(crowd, 150, seed=2)
    rest = _crowd_rows(crowd, 3000, seed=3)
    est = em_reliabilities(gold, [v for v, _ in rest])
    assert 0 < est.rounds < 50
    for a, p in crowd.items():
        assert est.reliability[a] == pytest.approx(p, abs=0.05)
    right = sum((posterior(v, est.reliability, est.prior) > 0.5) == (t == CORRECT) for v, t in rest) / len(rest)
    vote = sum((sum(v.values()) > 0) == (t == CORRECT) for v, t in rest) / len(rest)
    assert vote < 0.6 and right > 0.85


def test_one_shot_l1_fit_orders_annotators_and_zeroes_the_uninformative():
    rows = _crowd_rows({"expert": 0.95, "novice": 0.7, "spammer": 0.5}, 3000, seed=4)
    fit = fit_reliabilities(rows, gamma=0.01)
    w = fit.weights
    assert w["expert"] > w["novice"] > abs(w["spammer"]) and abs(w["spammer"]) < 0.1
    assert fit.prior == pytest.approx(0.7, abs=0.1) and fit.steps > 1
    assert all(v == 0.0 for v in fit_reliabilities(rows, gamma=10.0).weights.values())  # a large γ zeroes every weight
    plain = fit_reliabilities(rows, gamma=0.01, learn_prior=False)
    assert plain.prior == 0.5
    with pytest.raises(ValueError, match="at least one line"):
        fit_reliabilities([])


def test_reference_line_labels_mark_what_a_diff_cannot_match():
    reference = "    total = 0\n    for x in xs:\n        total += x\n    return total\n"
    wrong = "    total = 1\n\n    for x in xs:\n        total += x\n    return total\n"
    assert code_lines(wrong) == ["    total = 1", "    for x in xs:", "        total += x", "    return total"]
    assert reference_line_labels(wrong, reference, passed=False) == [WRONG, CORRECT, CORRECT, CORRECT]
    assert reference_line_labels(wrong, reference, passed=True) == [CORRECT] * 4  # a passing program is right
    assert reference_line_labels("    return sum(xs)\n", reference, passed=False) == [WRONG]


def test_with_gaps_a_left_out_line_costs_the_line_after_it():
    reference = "    total = 0\n    for x in xs:\n        x = abs(x)\n        total += x\n    return total\n"
    short = "    total = 0\n    for x in xs:\n        total += x\n    return total\n"  # the abs() line left out
    assert reference_line_labels(short, reference, passed=False) == [CORRECT] * 4  # the omission is free
    assert reference_line_labels(short, reference, passed=False, gaps=True) == [CORRECT, CORRECT, WRONG, CORRECT]
    cut = "    total = 0\n    for x in xs:\n"  # a gap at the end: the last line pays
    assert reference_line_labels(cut, reference, passed=False, gaps=True) == [CORRECT, WRONG]
    wrong = "    total = 1\n    for x in xs:\n        x = abs(x)\n        total += x\n    return total\n"
    assert reference_line_labels(wrong, reference, passed=False, gaps=True) == [WRONG] + [CORRECT] * 4  # a changed line: no gap
    assert reference_line_labels(short, reference, passed=True, gaps=True) == [CORRECT] * 4
