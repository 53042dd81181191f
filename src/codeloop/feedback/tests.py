"""The test expert: sandbox outcomes as a binary verdict, or as the graded reward of CodeRL.

Graded return (DESIGN.md 1.3): +1 all tests pass; -0.3 a test fails but the program runs; -0.6 runtime
error; -1 compile error. Timeouts and memory limits count as runtime errors; infrastructure failures
and sandbox violations are -1 (never rewarded).
"""

from __future__ import annotations

from codeloop.types import Feedback, Outcome, Status

REWARDS = {
    Status.PASSED: 1.0,
    Status.FAILED: -0.3,
    Status.RUNTIME_ERROR: -0.6,
    Status.TIMEOUT: -0.6,
    Status.MEMORY_EXCEEDED: -0.6,
    Status.COMPILE_ERROR: -1.0,
    Status.SANDBOX_VIOLATION: -1.0,
    Status.INFRA_ERROR: -1.0,
}


def passes(outcome: Outcome) -> Feedback:
    """1.0 when every test passed."""
    return Feedback("tests", 1.0 if outcome.passed else 0.0, outcome.reason, seconds=outcome.seconds)


def graded(outcome: Outcome) -> Feedback:
    """The CodeRL reward for the outcome."""
    return Feedback("tests", REWARDS[outcome.status], outcome.reason, seconds=outcome.seconds)
