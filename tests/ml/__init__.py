"""Tests of the model app: predictions, heatmaps, reviews, the registry, its pages and API."""
