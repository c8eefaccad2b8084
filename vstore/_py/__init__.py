"""Pure-Python reference twins of the compiled modules in ``ext/`` (same names, same API)."""
