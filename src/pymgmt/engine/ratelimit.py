"""A token bucket in front of check/apply (the ``limit``/``burst`` metaparams).

Events over the rate are not dropped: the worker keeps its *dirty* flag
while it waits for a token, so the last event is "replayed" when the bucket
allows and the resource always ends converged.
"""

from __future__ import annotations

import math
import time


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    @property
    def unlimited(self) -> bool:
        return math.isinf(self.rate)

    def wait_time(self) -> float:
        """Seconds until a token is available (0 = now); does not consume."""
        if self.unlimited:
            return 0.0
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self) -> None:
        if not self.unlimited:
            self.tokens -= 1.0
