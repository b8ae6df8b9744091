"""The one NaN / inf counter, for checkpoints, users' images and outputs."""

from __future__ import annotations

import numpy as np
import torch


def count_non_finite(values: np.ndarray | torch.Tensor) -> int:
    """How many entries of a floating-point array or tensor are NaN or +-inf (0 for integer types)."""
    if isinstance(values, torch.Tensor):
        return int(values.numel() - torch.isfinite(values).sum()) if values.is_floating_point() else 0
    if not np.issubdtype(values.dtype, np.floating):
        return 0
    return int(values.size - np.count_nonzero(np.isfinite(values)))
