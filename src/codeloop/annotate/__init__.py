"""The annotation web app of cRLHF (DESIGN.md 1.4): people mark each line of generated programs correct
or wrong on a page, honeypots (programs with known answers) mixed in unseen; the labels are stored in
SQLite and turned into per-program scores by ``codeloop.feedback.human``."""

from codeloop.annotate.store import Store

__all__ = ["Store"]
