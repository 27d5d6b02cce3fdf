"""Training losses: inverse-frequency class weights and weighted cross-entropy or focal loss."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from trendnlp.config import TrainConfig


def class_weights(labels: Sequence[str] | dict, names: Sequence[str]) -> torch.Tensor:
    """Inverse-frequency class weights from the training labels, normalised to mean 1 over classes.

    Args:
        labels: the training labels, or their counts {label: count} (e.g. from an Arrow build).
        names: class order of the returned tensor.
    Returns:
        float tensor (len(names),); a class absent from `labels` gets weight 1.

    >>> class_weights(["rising", "rising", "falling", "stable"], ["rising", "falling", "stable"]).tolist()
    [0.6000000238418579, 1.2000000476837158, 1.2000000476837158]
    """
    if isinstance(labels, dict):
        counts = np.array([labels.get(n, 0) for n in names], dtype=float)
    else:
        counts = np.array([sum(1 for lab in labels if lab == n) for n in names], dtype=float)
    inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), np.nan)
    inv = inv / np.nanmean(inv) if np.isfinite(inv).any() else np.ones(len(names))
    return torch.tensor(np.nan_to_num(inv, nan=1.0), dtype=torch.float32)


def loss_function(cfg: TrainConfig, weights: torch.Tensor | None) -> Callable:
    """Cross-entropy (cfg.loss="ce") or focal loss (cfg.loss="focal", cfg.focal_gamma), optionally class-weighted.

    Returns:
        loss(logits (B, C), target (B,)) -> scalar, the weighted mean sum(w_i * l_i) / sum(w_i) as in torch's
        weighted cross-entropy.
    """
    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp_t = F.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)  # fp32 under bf16 too
        w = weights.to(logits.device)[target] if weights is not None else torch.ones_like(logp_t)
        per = -logp_t if cfg.loss == "ce" else -((1 - logp_t.exp()) ** cfg.focal_gamma) * logp_t
        return (w * per).sum() / w.sum()
    return loss
