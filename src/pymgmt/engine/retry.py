"""Retry policy for failed check/apply and watch (``retry``/``delay``/``backoff``).

mgmt waits a fixed ``delay`` between tries; ``backoff: exponential`` doubles
it after every failure up to ``maxdelay``, with up to 10% random jitter so a
fleet recovering from the same outage does not retry in lockstep.
"""

from __future__ import annotations

import random

from ..metaparams import MetaParams


class RetryBudget:
    """Counts failures of one kind (check/apply, or watch) for one vertex."""

    def __init__(self, meta: MetaParams) -> None:
        self.meta = meta
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def next_delay(self) -> float | None:
        """Record a failure; return seconds to wait before retrying, or None if exhausted."""
        self.failures += 1
        m = self.meta
        if m.retry >= 0 and self.failures > m.retry:
            return None
        delay = m.delay / 1000.0
        if m.backoff == "exponential" and delay > 0:
            delay *= 2 ** (self.failures - 1)
            if m.maxdelay:
                delay = min(delay, m.maxdelay / 1000.0)
            delay *= 1 + random.uniform(0, 0.1)  # jitter, not security
        return delay
