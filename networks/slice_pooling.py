"""Pooling of per-slice embeddings into one patient embedding (multiple-instance learning).

A patient is a bag of tumour slices; the survival label belongs to the bag, not to a slice.
Both poolings map (B, S, E) slice embeddings to (B, E) and are linear-head compatible:
``MeanSlicePooling`` followed by a linear risk layer is exactly the mean of per-slice risks (how
the first networks aggregated), and ``GatedAttentionPooling`` learns which slices matter
(heterogeneous tumours: the few slices that carry necrosis or an invasive margin).

Reference: M. Ilse, J. M. Tomczak, M. Welling, "Attention-based Deep Multiple Instance
Learning", ICML 2018 (arXiv:1802.04712), gated attention, eq. 9:
``a_s = softmax_s(w^T (tanh(V h_s) * sigmoid(U h_s)))``, pooled ``z = sum_s a_s h_s``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MeanSlicePooling", "GatedAttentionPooling", "SLICE_POOLINGS"]

SLICE_POOLINGS = ("mean", "attention")


class MeanSlicePooling(nn.Module):
    """(B, S, E) -> (B, E): the mean over slices. No parameters (old state dicts load strictly)."""

    def weights(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, S) slice weights: uniform."""
        return torch.full(embeddings.shape[:2], 1.0 / embeddings.shape[1],
                          dtype=embeddings.dtype, device=embeddings.device)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return embeddings.mean(1)


class GatedAttentionPooling(nn.Module):
    """(B, S, E) -> (B, E): gated attention MIL pooling (Ilse et al. 2018, eq. 9).

    Args:
        embed_dim: slice embedding width E.
        attention_dim: hidden width of the attention network (Ilse et al.'s L -> D = 128 for
            their 500-wide embeddings; here it defaults to E in :class:`VisionMambaSurv`).

    With small initial weights (the network's trunc-normal 0.02 init) the weights start near
    uniform, i.e. near mean pooling; they become selective only as training moves them.
    """

    def __init__(self, embed_dim: int, attention_dim: int) -> None:
        super().__init__()
        if embed_dim < 1 or attention_dim < 1:
            raise ValueError(f"embed_dim and attention_dim must be >= 1, got {embed_dim}, "
                             f"{attention_dim}")
        self.attention_v = nn.Linear(embed_dim, attention_dim)  # tanh branch (V)
        self.attention_u = nn.Linear(embed_dim, attention_dim)  # sigmoid gate (U)
        self.attention_w = nn.Linear(attention_dim, 1)  # w

    def weights(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, S) attention weights, summing to 1 over each patient's slices."""
        gated = torch.tanh(self.attention_v(embeddings)) * torch.sigmoid(self.attention_u(embeddings))
        return torch.softmax(self.attention_w(gated).squeeze(-1), dim=1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return (self.weights(embeddings).unsqueeze(-1) * embeddings).sum(1)
