"""Local fake servers for tests and benchmarks."""
