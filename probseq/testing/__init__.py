"""Oracles for tests: brute-force enumeration on tiny cases (see STYLE.md, convention 5)."""
