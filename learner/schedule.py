"""Learning-rate schedule: linear warmup, then cosine decay to a floor."""
from __future__ import annotations

import math


def warmup_cosine(step: int, peak_lr: float, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """The learning rate of optimizer step `step` (0-based).

    Rises linearly to `peak_lr` over `warmup_steps` (step 0 already trains, at
    peak/warmup), then follows half a cosine down to `min_ratio * peak_lr` at the last step.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    floor = min_ratio * peak_lr
    return floor + (peak_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
