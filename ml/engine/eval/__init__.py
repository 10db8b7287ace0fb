"""Metrics: classification and calibration on held-out data, plots, agreement with reviewers.

``metrics`` (discrimination), ``calibration`` (reliability, ECE, NLL), ``report`` (both,
JSON-able), ``plots`` (PNG figures of a report) and ``reviewed`` (reviewed predictions, for the
web app) need no torch; ``temperature`` (the temperature fit) does. Nothing is imported here,
so importing one module never loads the others.
"""
