"""Experts that judge samples, one per file: compiler, tests, judge (an LLM semantic expert)."""
