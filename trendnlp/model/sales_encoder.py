"""Sales branch: an LSTM over the per-period channels plus the standardised summary statistics.

    sales    (B, T, C)  left-padded channels (features.py); channel 1 is the observed mask
    summary  (B, S)     hand-made statistics (features.SUMMARY_NAMES), standardised by buffers fitted on train
    output   (B, H * directions + H)   LSTM state at the real ends of the series ++ Linear(summary)

Padding is never fed to the LSTM: each series is rotated so its real periods come first and then
packed, so the forward direction ends at the newest period and the backward one at the oldest.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from trendnlp.config import SalesConfig

MASK_CHANNEL = 1  # features.py: 1 for a real period, 0 for left padding
SUMMARY_CLIP = 5.0  # standardised summaries beyond +-5 std are clipped: a few wild series must not dominate


class SalesEncoder(nn.Module):
    """LSTM + summary projection.

    Args:
        cfg: the sales part of the config (history, hidden_size, num_layers, bidirectional, dropout, summary_stats).
        n_summary: length S of the summary vector (len(features.SUMMARY_NAMES)).
        n_channels: C, channels per period: features.n_sales_channels(cfg), which grows with the optional
            channels the config switches on (no default, so a caller cannot build an encoder of the wrong width).
    """

    def __init__(self, cfg: SalesConfig, n_summary: int, n_channels: int):
        super().__init__()
        self.cfg, self.n_summary = cfg, n_summary
        self.directions = 2 if cfg.bidirectional else 1
        self.lstm = nn.LSTM(n_channels, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=True,
                            bidirectional=cfg.bidirectional, dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)
        # standardisation of the summary statistics; buffers so they travel in model.safetensors
        self.register_buffer("summary_mean", torch.zeros(n_summary))
        self.register_buffer("summary_std", torch.ones(n_summary))
        self.summary_proj = nn.Linear(n_summary, cfg.hidden_size) if cfg.summary_stats else None
        self.output_dim = cfg.hidden_size * self.directions + (cfg.hidden_size if cfg.summary_stats else 0)

    def fit_summary_scaler(self, summary: np.ndarray) -> None:
        """Set `summary_mean` / `summary_std` from training summaries.

        Args:
            summary: (N, S) summary vectors of the training records.
        """
        summary = np.asarray(summary, dtype=np.float64)
        if summary.ndim != 2 or summary.shape[1] != self.n_summary or len(summary) == 0:
            raise ValueError(f"fit_summary_scaler: expected a non-empty (N, {self.n_summary}) array, "
                             f"found shape {summary.shape}")
        self.set_summary_scaler(summary.mean(axis=0), summary.std(axis=0))

    def set_summary_scaler(self, mean: np.ndarray | list, std: np.ndarray | list) -> None:
        """Set `summary_mean` / `summary_std` from statistics computed elsewhere (the Arrow build's one pass).

        Args:
            mean, std: (S,) mean and population std of the training summaries.
        """
        mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        if mean.shape != (self.n_summary,) or std.shape != (self.n_summary,):
            raise ValueError(f"set_summary_scaler: expected a mean and a std of {self.n_summary} values each, found "
                             f"shapes {mean.shape} and {std.shape}")
        std = np.where(std < 1e-6, 1.0, std)  # constant statistics (e.g. all full histories) stay at 0
        self.summary_mean.copy_(torch.as_tensor(mean, dtype=self.summary_mean.dtype))
        self.summary_std.copy_(torch.as_tensor(std, dtype=self.summary_std.dtype))

    def scaling_stats(self) -> dict:
        """The fitted summary scaling as plain lists (for config.json)."""
        return {"summary_mean": self.summary_mean.tolist(), "summary_std": self.summary_std.tolist()}

    def encode_series(self, sales: torch.Tensor) -> torch.Tensor:
        """(B, T, C) left-padded -> (B, H * directions): last layer's final states of each direction."""
        B, T, _ = sales.shape
        lengths = sales[:, :, MASK_CHANNEL].sum(1).round().long().clamp(1, T)  # (B,) observed periods
        # rotate left by the padding so real periods sit at 0 .. len-1 (right padding), then pack
        shift = (T - lengths).unsqueeze(1)  # (B, 1)
        idx = (torch.arange(T, device=sales.device).unsqueeze(0) + shift) % T  # (B, T)
        x = sales.gather(1, idx.unsqueeze(-1).expand_as(sales))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)  # h_n: (layers * directions, B, H), in the batch's original order
        last = h_n[-self.directions:]  # (directions, B, H) top layer: forward ends at newest, backward at oldest
        return last.transpose(0, 1).reshape(B, -1)

    def forward(self, sales: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
        """Encode the sales history.

        Args:
            sales: (B, T, C) per-period channels, left-padded.
            summary: (B, S) raw summary statistics.
        Returns:
            (B, output_dim) sales representation.
        """
        h = self.encode_series(sales)
        if self.summary_proj is not None:
            z = ((summary - self.summary_mean) / self.summary_std).clamp(-SUMMARY_CLIP, SUMMARY_CLIP)  # (B, S)
            h = torch.cat([h, self.summary_proj(z.to(self.summary_proj.weight.dtype))], dim=-1)
        return self.dropout(h)
