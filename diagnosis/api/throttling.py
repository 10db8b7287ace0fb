"""Per-user (or, anonymously, per-address) throttles that always say when to retry."""

from rest_framework import throttling


class ScopedRateThrottle(throttling.ScopedRateThrottle):
    """DRF's scoped throttle, whose 429 always carries Retry-After.

    DRF's ``wait()`` is ``None`` once a client has gone on sending past its allowance (the
    history is longer than the rate), and the 429 then has no Retry-After. Here it is the time
    until the oldest request in the window expires (at least a second).
    """

    def wait(self):
        wait = super().wait()
        if wait is None and self.history:
            wait = max(self.duration - (self.now - self.history[-1]), 1)
        return wait
