"""Benchmarks (``make bench`` → ``python -m bench.run``): cost, overhead, fleet, history. Results in bench/results/."""
