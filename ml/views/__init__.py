"""The pages of ``ml``: cases with their results, and the dermatologist's review."""
