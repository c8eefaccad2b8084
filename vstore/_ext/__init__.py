"""Install target of the compiled modules built from ``ext/``; import them via vstore._native."""
