"""The REST API of ``ml``: cases with their results, model versions, the review queue, exports."""
