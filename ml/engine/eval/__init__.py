"""Metrics: classification and calibration on held-out data, plots, agreement with reviewers."""
