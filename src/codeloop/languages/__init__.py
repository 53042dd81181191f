"""Languages other than Python: a checker (the compiler expert) and a runner for each.

``st``: IEC 61131-3 Structured Text, checked and interpreted in pure Python (no PLC toolchain needed).
"""
