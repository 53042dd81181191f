"""Task sources, sample files and JSONL input/output, with errors that name file, line and field."""

from codeloop.data.jsonl import DataError, read_jsonl, write_jsonl
from codeloop.data.samples import read_samples
from codeloop.data.tasks import load_tasks

__all__ = ["DataError", "load_tasks", "read_jsonl", "read_samples", "write_jsonl"]
