"""Test harness shipped with vstore (contract tests that backends and hosts can reuse)."""
