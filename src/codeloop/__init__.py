"""codeloop: feedback loops for code-generating language models."""
__version__ = "0.1.0"
