"""VisionMambaSurv: convolutional stem -> bidirectional Vision-Mamba encoder -> one risk score.

Design after Vim (Zhu et al. 2024, hustvl/Vim) and the 3D multi-input Mamba survival model the
paper builds on: convolutions extract local texture and downsample (/8: 144 tokens at 96 px), a
class token sits in the middle of the token sequence (Vim's ``use_middle_cls_token``) with a
learned position embedding, bimamba-v2 blocks mix the sequence in both directions, and the head
reads the normed class token into ``Linear(embed_dim, 1)``: the log-hazard risk (higher = shorter
survival), trained with :class:`survival.cox_loss.CoxPartialLikelihoodLoss`.

Named stages for fine-tuning: ``stem`` (convolutions + patch embedding), ``tokens`` (class token
and position embedding), ``blocks`` (``nn.ModuleList``, indexable), ``head``.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import Iterator, Optional, Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from networks.mamba_block import SCAN_BACKENDS, MambaBlock, RMSNorm

__all__ = ["VisionMambaSurv"]

logger = logging.getLogger(__name__)


class TokenEmbedding(nn.Module):
    """Flattens the patch grid, inserts the class token in the middle, adds position embedding."""

    def __init__(self, num_patches: int, embed_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.cls_position = num_patches // 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        tokens = grid.flatten(2).transpose(1, 2)  # (B, H'W', E)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        p = self.cls_position
        tokens = torch.cat([tokens[:, :p], cls, tokens[:, p:]], dim=1)
        return self.pos_drop(tokens + self.pos_embed)


class RiskHead(nn.Module):
    """Final RMSNorm -> class token -> dropout -> Linear(embed_dim, 1)."""

    def __init__(self, embed_dim: int, cls_position: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.cls_position = cls_position
        self.norm = RMSNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.norm(tokens)[:, self.cls_position]))


class VisionMambaSurv(nn.Module):
    """Vision-Mamba survival network: (B, C, H, W) slice stack -> (B, 1) risk.

    Args:
        in_channels: input channels (CT + selected radiomics maps).
        img_size: square input size in pixels; must be divisible by 8.
        stem_widths: output widths of the two stride-2 conv3x3-BN-ReLU stem blocks.
        embed_dim: token width (2x2 patch embedding after the stem).
        depth: number of bidirectional Mamba blocks.
        d_state: SSM state size.
        d_conv: depthwise conv width inside the mixer.
        expand: mixer inner width = expand * embed_dim.
        drop_path: stochastic-depth rate of the last block (linear from 0, as in Vim).
        dropout: dropout on the position-embedded tokens and before the risk layer.
        scan_backend: "auto" | "torch" | "mamba_ssm"; "auto" uses mamba-ssm's CUDA kernel for
            CUDA inputs when it imports, else the exact torch scan. The choice is logged.
    """

    def __init__(self, in_channels: int, img_size: int = 96, stem_widths: Sequence[int] = (32, 64),
                 embed_dim: int = 128, depth: int = 8, d_state: int = 16, d_conv: int = 4,
                 expand: int = 2, drop_path: float = 0.0, dropout: float = 0.0,
                 scan_backend: str = "auto") -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if img_size % 8:
            raise ValueError(f"img_size must be divisible by 8 (/8 stem), got {img_size}")
        if len(stem_widths) != 2:
            raise ValueError(f"stem_widths needs two widths (two stride-2 blocks), got {stem_widths}")
        if scan_backend not in SCAN_BACKENDS:
            raise ValueError(f"scan_backend must be one of {SCAN_BACKENDS}, got {scan_backend!r}")
        self.in_channels, self.img_size, self.depth = in_channels, img_size, depth
        self.embed_dim, self.scan_backend = embed_dim, scan_backend
        w1, w2 = (int(w) for w in stem_widths)
        conv = dict(spatial_dims=2, kernel_size=3, strides=2, act="RELU", norm="BATCH", bias=False)
        self.stem = nn.Sequential(OrderedDict(
            conv1=Convolution(in_channels=in_channels, out_channels=w1, **conv),
            conv2=Convolution(in_channels=w1, out_channels=w2, **conv),
            patch_embed=nn.Conv2d(w2, embed_dim, kernel_size=2, stride=2),
        ))
        self.grid_size = img_size // 8
        num_patches = self.grid_size ** 2
        self.tokens = TokenEmbedding(num_patches, embed_dim, dropout)
        rates = torch.linspace(0, drop_path, depth).tolist() if depth > 0 else []
        self.blocks = nn.ModuleList(
            MambaBlock(embed_dim, d_state=d_state, d_conv=d_conv, expand=expand, drop_path=r,
                       scan_backend=scan_backend) for r in rates
        )
        self.head = RiskHead(embed_dim, self.tokens.cls_position, dropout)
        self._frozen_modules: list[nn.Module] = []
        self._init_weights()
        logger.info("VisionMambaSurv: %d parameters, %d tokens, scan_backend=%s",
                    sum(p.numel() for p in self.parameters()), num_patches + 1, scan_backend)

    def _init_weights(self) -> None:
        """Vim/Mamba init: trunc-normal Linear weights, zero biases except dt_proj's (which
        holds Mamba's dt initialisation), out_proj rescaled by 1/sqrt(depth) (GPT-2 style)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                if getattr(m.bias, "_no_reinit", False):
                    continue
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for block in self.blocks:
            w = block.mixer.out_proj.weight
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            with torch.no_grad():
                w /= math.sqrt(max(1, self.depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if not torch.jit.is_tracing() and tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise ValueError(f"expected {self.img_size}x{self.img_size} slices (position embedding "
                             f"size), got {tuple(x.shape[-2:])}")
        if hasattr(x, "as_tensor"):  # MONAI MetaTensor: the scan allocates with new_empty, which
            x = x.as_tensor()         # MetaTensor breaks; metadata is not needed past this point
        h = self.tokens(self.stem(x.float()))
        for block in self.blocks:
            h = block(h)
        return self.head(h)

    # ---- fine-tuning API -------------------------------------------------------------------
    def freeze(self, stem: bool = True, blocks: Optional[int] = None) -> "VisionMambaSurv":
        """Freeze the stem (+ class token/position embedding) and the first ``blocks`` blocks.

        ``blocks`` defaults to depth // 2. Frozen parameters get ``requires_grad=False`` and
        frozen BatchNorm layers stay in eval mode even under ``model.train()`` (their running
        statistics are pre-training's). ``freeze(stem=False, blocks=0)`` unfreezes everything.
        """
        k = self.depth // 2 if blocks is None else int(blocks)
        if not 0 <= k <= self.depth:
            raise ValueError(f"blocks must be in [0, {self.depth}], got {blocks}")
        frozen: list[nn.Module] = ([self.stem, self.tokens] if stem else []) + list(self.blocks[:k])
        for p in self.parameters():
            p.requires_grad_(True)
        for m in frozen:
            for p in m.parameters():
                p.requires_grad_(False)
        self._frozen_modules = frozen
        self.train(self.training)
        logger.info("freeze: stem=%s, first %d of %d blocks; %d trainable parameters", stem, k,
                    self.depth, sum(p.numel() for p in self.trainable_parameters()))
        return self

    def train(self, mode: bool = True) -> "VisionMambaSurv":
        super().train(mode)
        for m in getattr(self, "_frozen_modules", []):
            for sub in m.modules():
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the optimiser should update (those not frozen)."""
        return (p for p in self.parameters() if p.requires_grad)
