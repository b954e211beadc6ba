"""Benchmarks: `make bench` runs them all. They print figures measured side by side; they assert
nothing (timings on a shared machine belong here, never in tests)."""
