"""Small statistics the chapters need to state how sure a measured number is."""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    r"""The Wilson score interval of a share :math:`\hat p = k / n` (95% with ``z = 1.96``; Wilson, 1927).

    .. math:: \frac{\hat p + z^2/2n \pm z \sqrt{\hat p (1 - \hat p)/n + z^2/4n^2}}{1 + z^2/n}

    Unlike :math:`\hat p \pm z\sqrt{\hat p(1-\hat p)/n}` it stays inside [0, 1] and does not shrink
    to a point when every sample is right (or every sample wrong).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need integers 0 <= successes <= n and n >= 1, got {successes} of {n}")
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)
