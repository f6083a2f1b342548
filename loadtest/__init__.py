"""Open-loop load generator and benchmarks for the gateway."""
