"""When to try a token request again, and after how long.

Only transient failures are retried. A ``Retry-After`` from the server wins over our own
backoff (capped, so a confused server cannot park the caller for an hour); otherwise the delay
doubles from ``first_delay`` with jitter, so that many clients restarted together spread out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from entra_guard.client.errors import TokenRequestError

__all__ = ["MAX_RETRY_AFTER", "RetryPolicy"]

#: The longest ``Retry-After`` honoured; longer ones are cut to this.
MAX_RETRY_AFTER = 60.0
_MAX_BACKOFF = 8.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int
    first_delay: float

    def delay(self, retries_done: int, error: TokenRequestError) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up and raise."""
        if not error.transient or retries_done >= self.max_retries:
            return None
        if error.retry_after is not None:
            return min(error.retry_after, MAX_RETRY_AFTER)
        backoff = min(_MAX_BACKOFF, self.first_delay * 2.0**retries_done)
        return backoff * random.uniform(0.5, 1.0)  # noqa: S311  # jitter, not cryptography
