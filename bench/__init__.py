"""The benchmarks: every figure of the serving path with its target, and the load run.

Run from the repository root (``make bench``, ``make load``)::

    .venv/bin/python -m bench [--quick] [--skip-stack] [--only a,d] [--compare last] ...
    .venv/bin/python -m bench.load [--duration 60]
    .venv/bin/python -m bench.decode            # one section alone (also latency, throughput, ...)

``bench.targets`` holds the targets the figures are compared with; ``bench.processes`` the
real-service process helpers that ``tests/services.py`` shares. Importing this package imports
nothing else (the worker-memory children measure processes that must not load torch).
"""
