"""dos_bench: one config-driven framework for density-of-states prediction benchmarks."""

__version__ = "0.1.0"
