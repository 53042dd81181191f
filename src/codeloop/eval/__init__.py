"""Scoring samples: pass@k and the evaluation of sample files against task tests."""

from codeloop.eval.evaluate import Report, evaluate, job_for, outcome_from_row, preload_for, result_row, resume_outcomes, summarize
from codeloop.eval.pass_at_k import estimate_pass_at_k, pass_at_k

__all__ = ["Report", "estimate_pass_at_k", "evaluate", "job_for", "outcome_from_row", "pass_at_k", "preload_for", "result_row", "resume_outcomes", "summarize"]
