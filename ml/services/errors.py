"""The error the prediction services raise for failures that retrying cannot fix."""


class PermanentPredictionError(Exception):
    """A failure that retrying cannot fix (no model, bad weights, unreadable image)."""
