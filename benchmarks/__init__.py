"""Side-by-side benchmarks for acp-async: ``make bench`` (or ``python -m benchmarks``).

Each scenario lives in its own small module; ``__main__`` runs them all and writes
``benchmarks/RESULTS.md``. Every number is a ratio measured in one run on one machine.
"""
