"""The agent: stdlib only, so it runs wherever CPython 3.9+ runs."""
