"""Text for the status bar."""
from __future__ import annotations

import math

_DASH = "—"


def format_status(step: int, loss: float | None, steps_per_second: float, device: str) -> str:
    """One line such as ``"step 51 · loss — · 1,234 steps/s · cpu"``.

    A missing loss shows as a dash; NaN and inf show as such (worth seeing when debugging).
    """
    if loss is None:
        loss_text = _DASH
    elif math.isfinite(loss):
        loss_text = f"{loss:.4g}"
    else:
        loss_text = str(loss)
    sps = steps_per_second if math.isfinite(steps_per_second) else 0.0
    sps_text = f"{sps:.1f}" if 0 < sps < 10 else f"{round(sps):,}"
    return f"step {step:,} · loss {loss_text} · {sps_text} steps/s · {device}"
