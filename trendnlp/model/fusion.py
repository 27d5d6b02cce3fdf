"""Fusion of the text and sales representations, and the classification head.

    text     (B, H_t)          pooled text per record (the learned empty embedding for records without text)
    sales    (B, H_s)          sales representation
    tokens   (B, L, H_t)       token states per record, only for cross_attention; token_mask (B, L), 1 = real
    logits   (B, n_classes)

Methods (FusionConfig.method):
    concat           [text, sales]
    gated            [g * P_t(text) + (1 - g) * P_s(sales), text, sales],  g = sigmoid(W [text, sales])
    cross_attention  [attn(q = P_q(sales), k = v = tokens), text, sales]: the sales state asks the text
When only one branch is enabled (text-only or sales-only configs) every method reduces to that branch.
"""
from __future__ import annotations

import torch
from torch import nn

from trendnlp.config import FusionConfig


class FusionHead(nn.Module):
    """Fuse the branches, then an MLP to logits.

    Args:
        cfg: the fusion part of the config (method, hidden_size, dropout, num_heads).
        text_dim: H_t, or None when text is disabled.
        sales_dim: H_s, or None when sales are disabled.
        n_classes: number of labels.
    """

    def __init__(self, cfg: FusionConfig, text_dim: int | None, sales_dim: int | None, n_classes: int = 3):
        super().__init__()
        if text_dim is None and sales_dim is None:
            raise ValueError("FusionHead needs at least one of text_dim and sales_dim")
        self.cfg, self.text_dim, self.sales_dim = cfg, text_dim, sales_dim
        self.method = cfg.method if (text_dim and sales_dim) else "single"
        D = cfg.hidden_size
        in_dim = (text_dim or 0) + (sales_dim or 0)
        if self.method == "gated":
            self.proj_text = nn.Linear(text_dim, D)
            self.proj_sales = nn.Linear(sales_dim, D)
            self.gate = nn.Linear(text_dim + sales_dim, D)
            in_dim += D
        elif self.method == "cross_attention":
            if D % cfg.num_heads:
                raise ValueError(f"fusion.hidden_size ({D}) must be divisible by fusion.num_heads ({cfg.num_heads}) "
                                 "for cross_attention")
            self.query = nn.Linear(sales_dim, D)
            self.attn = nn.MultiheadAttention(D, cfg.num_heads, dropout=cfg.dropout, kdim=text_dim, vdim=text_dim,
                                              batch_first=True)
            in_dim += D
        elif self.method not in ("concat", "single"):
            raise ValueError(f"fusion.method must be concat, gated or cross_attention, found {cfg.method!r}")
        self.needs_tokens = self.method == "cross_attention"
        # LayerNorm first: the pieces (pooled BERT, LSTM state, summary projection) live on different scales
        self.mlp = nn.Sequential(
            nn.LayerNorm(in_dim), nn.Dropout(cfg.dropout), nn.Linear(in_dim, D), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Linear(D, n_classes))
        self.output_dim = n_classes
        # multi-task: the label rule's change regressed from the same hidden layer as the logits
        self.change_head = nn.Linear(D, 1) if cfg.change_head else None

    def fuse(self, text: torch.Tensor | None, sales: torch.Tensor | None, tokens: torch.Tensor | None = None,
             token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The fused vector (B, in_dim) fed to the MLP."""
        parts = [p for p in (text, sales) if p is not None]
        if self.method == "gated":
            g = torch.sigmoid(self.gate(torch.cat([text, sales], dim=-1)))  # (B, D)
            parts.insert(0, g * self.proj_text(text) + (1 - g) * self.proj_sales(sales))
        elif self.method == "cross_attention":
            if tokens is None or token_mask is None:
                raise ValueError("cross_attention fusion needs tokens (B, L, H_t) and token_mask (B, L)")
            q = self.query(sales).unsqueeze(1)  # (B, 1, D)
            attended, _ = self.attn(q, tokens.to(q.dtype), tokens.to(q.dtype), key_padding_mask=~token_mask.bool(),
                                    need_weights=False)  # (B, 1, D)
            parts.insert(0, attended.squeeze(1))
        dtype = parts[0].dtype
        return torch.cat([p.to(dtype) for p in parts], dim=-1)

    def forward(self, text: torch.Tensor | None, sales: torch.Tensor | None, tokens: torch.Tensor | None = None,
                token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from the branch outputs.

        Args:
            text: (B, H_t) or None when text is disabled.
            sales: (B, H_s) or None when sales are disabled.
            tokens, token_mask: (B, L, H_t) and (B, L) for cross_attention (1 = attend); every row needs
                at least one real entry.
        Returns:
            (B, n_classes) logits.
        """
        return self.mlp(self.fuse(text, sales, tokens, token_mask))

    def expected_change(self, text, sales, tokens=None, token_mask=None) -> torch.Tensor:
        """(B,) the regression head's estimate of the label rule's change, from the MLP's hidden layer (B, D);
        needs `cfg.change_head`. Arguments as `forward`."""
        if self.change_head is None:
            raise ValueError("expected_change needs fusion.change_head=true")
        hidden = self.mlp[:-1](self.fuse(text, sales, tokens, token_mask))  # (B, D): all but the class layer
        return self.change_head(hidden).squeeze(-1)
