"""VisionMambaSurv: convolutional stem -> bidirectional Vision-Mamba encoder -> one risk per patient.

Design after Vim (Zhu et al. 2024, hustvl/Vim) and the 3D multi-input Mamba survival model the
paper builds on: convolutions extract local texture and downsample (/8: 36 tokens at 48 px), a
class token sits in the middle of the token sequence (Vim's ``use_middle_cls_token``) with a
learned position embedding, bimamba-v2 blocks mix the sequence in both directions, and the normed
class token is the slice's embedding. A patient is a stack of tumour slices (B, C, H, W, S): the
slice embeddings are pooled over S (mean, or gated attention MIL pooling, Ilse et al. 2018) and
read by ``Linear(embed_dim, 1)``: the log-hazard risk (higher = shorter survival), trained with
:class:`voxsurv.stats.cox_loss.CoxPartialLikelihoodLoss` over risk sets of PATIENTS.

Anchored variant (``n_descriptors > 0``): risk = a fixed Cox offset on tumour descriptors
(:class:`networks.anchor.CoxAnchor`) + the image risk, so the network learns only the residual.

Named stages for fine-tuning: ``stem`` (convolutions + patch embedding), ``tokens`` (class token
and position embedding), ``blocks`` (``nn.ModuleList``, indexable), ``head`` (norm, slice pooling,
risk layer), ``anchor`` (buffers only).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from networks.anchor import CoxAnchor
from networks.mamba_block import SCAN_BACKENDS, MambaBlock, RMSNorm
from networks.slice_pooling import SLICE_POOLINGS, GatedAttentionPooling, MeanSlicePooling

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
    """Final RMSNorm -> class token (slice embedding); slice pooling -> dropout -> Linear(E, 1).

    ``embed`` runs per slice, ``forward`` per patient. With mean pooling the parameters are those
    of the per-slice head the first networks had (``norm``, ``fc``), and the risk equals the mean of
    the per-slice risks: the linear layer commutes with the mean.
    """

    def __init__(self, embed_dim: int, cls_position: int, pooling: str = "mean",
                 attention_dim: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        if pooling not in SLICE_POOLINGS:
            raise ValueError(f"pooling must be one of {SLICE_POOLINGS}, got {pooling!r}")
        self.cls_position = cls_position
        self.norm = RMSNorm(embed_dim)
        self.pool = (GatedAttentionPooling(embed_dim, attention_dim) if pooling == "attention"
                     else MeanSlicePooling())
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(embed_dim, 1)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L, E) tokens -> (N, E) normed class-token embeddings."""
        return self.norm(tokens)[:, self.cls_position]

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, S, E) slice embeddings -> (B, 1) risk."""
        return self.fc(self.dropout(self.pool(embeddings)))


class VisionMambaSurv(nn.Module):
    """Vision-Mamba survival network: (B, C, H, W, S) patient slice stacks -> (B, 1) risk.

    Args:
        in_channels: input channels (e.g. CT, radiomics maps, tumour mask).
        img_size: square slice size in pixels; must be divisible by 8.
        stem_widths: output widths of the two stride-2 conv3x3-BN-ReLU stem blocks.
        embed_dim: token width (2x2 patch embedding after the stem).
        depth: number of bidirectional Mamba blocks.
        d_state: SSM state size.
        d_conv: depthwise conv width inside the mixer.
        expand: mixer inner width = expand * embed_dim.
        drop_path: stochastic-depth rate of the last block (linear from 0, as in Vim).
        dropout: dropout on the position-embedded tokens and on the pooled patient embedding.
        scan_backend: "auto" | "torch" | "mamba_ssm"; "auto" uses mamba-ssm's CUDA kernel for
            CUDA inputs when it imports, else the exact torch scan. The choice is logged.
        pooling: how slice embeddings become a patient embedding: "mean" (the mean of per-slice
            risks; what state dicts of the per-slice networks load into) or "attention" (gated
            attention MIL pooling, Ilse et al. 2018, :class:`networks.slice_pooling.GatedAttentionPooling`).
        attention_dim: hidden width of the attention pooling (default: embed_dim).
        n_descriptors: > 0 makes the network anchored: risk = ``anchor_offset(descriptors)`` +
            ``image_risk(x)``, the anchor a fixed Cox predictor set with :meth:`set_anchor`.

    ``forward(x, descriptors=None)``: x is (B, C, H, W, S), S slices per patient (the same S within
    a batch), or (B, C, H, W) = one slice per patient. ``descriptors`` (B, n_descriptors) is
    required when anchored and ignored otherwise (a training loop may always pass it).
    """

    def __init__(self, in_channels: int, img_size: int = 48, stem_widths: Sequence[int] = (32, 64),
                 embed_dim: int = 64, depth: int = 4, d_state: int = 16, d_conv: int = 4,
                 expand: int = 2, drop_path: float = 0.0, dropout: float = 0.0,
                 scan_backend: str = "auto", pooling: str = "mean",
                 attention_dim: Optional[int] = None, n_descriptors: int = 0) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if img_size % 8:
            raise ValueError(f"img_size must be divisible by 8 (/8 stem), got {img_size}")
        if len(stem_widths) != 2:
            raise ValueError(f"stem_widths needs two widths (two stride-2 blocks), got {stem_widths}")
        if scan_backend not in SCAN_BACKENDS:
            raise ValueError(f"scan_backend must be one of {SCAN_BACKENDS}, got {scan_backend!r}")
        if pooling not in SLICE_POOLINGS:
            raise ValueError(f"pooling must be one of {SLICE_POOLINGS}, got {pooling!r}")
        if n_descriptors < 0:
            raise ValueError(f"n_descriptors must be >= 0, got {n_descriptors}")
        self.in_channels, self.img_size, self.depth = in_channels, img_size, depth
        self.embed_dim, self.scan_backend, self.pooling = embed_dim, scan_backend, pooling
        self.n_descriptors = int(n_descriptors)
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
        self.head = RiskHead(embed_dim, self.tokens.cls_position, pooling,
                             int(attention_dim or embed_dim), dropout)
        self.anchor = CoxAnchor(self.n_descriptors)
        self._init_weights()
        logger.info("VisionMambaSurv: %d parameters, %d tokens, pooling=%s, n_descriptors=%d, "
                    "scan_backend=%s", sum(p.numel() for p in self.parameters()), num_patches + 1,
                    pooling, self.n_descriptors, scan_backend)
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

    def forward(self, x: torch.Tensor, descriptors: Optional[torch.Tensor] = None) -> torch.Tensor:
        risk = self.image_risk(x)
        if self.n_descriptors > 0:
            if descriptors is None:
                raise ValueError(f"this network is anchored (n_descriptors={self.n_descriptors}): "
                                 "call it as network(image, descriptors); in a MONAI engine use "
                                 "prepare_batch=PrepareBatchExtraInput(extra_keys=['descriptors'])")
            risk = risk + self.anchor_offset(descriptors)
        return risk

    @torch.jit.export
    def image_risk(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1) risk from the images alone (the whole risk when not anchored)."""
        return self.head(self.slice_embeddings(x))

    @torch.jit.export
    def anchor_offset(self, descriptors: torch.Tensor) -> torch.Tensor:
        """(B, 1) fixed Cox offset of the descriptors; zeros when the network is not anchored."""
        if not torch.jit.is_scripting():
            if hasattr(descriptors, "as_tensor"):
                descriptors = descriptors.as_tensor()
            if self.n_descriptors > 0 and not bool(self.anchor.scale.ne(1).any() or
                                                   self.anchor.coef.ne(0).any()):
                if not getattr(self, "_unset_anchor_warned", False):
                    logger.warning("anchored network used before set_anchor(): the offset is 0")
                    self._unset_anchor_warned = True
        return self.anchor(descriptors)

    @torch.jit.export
    def slice_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W, S) or (B, C, H, W) -> (B, S, E) normed class-token embeddings, each slice
        encoded independently (slices of all patients run as one batch through stem and blocks)."""
        if not torch.jit.is_scripting():
            if hasattr(x, "as_tensor"):  # MONAI MetaTensor: the scan allocates with new_empty,
                x = x.as_tensor()         # which MetaTensor breaks; metadata is not needed here
        if (x.dim() != 4 and x.dim() != 5) or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, H, W, S) or "
                             f"(B, {self.in_channels}, H, W), got {list(x.shape)}")
        if not torch.jit.is_tracing() and (x.shape[2] != self.img_size or x.shape[3] != self.img_size):
            raise ValueError(f"expected {self.img_size}x{self.img_size} slices (position embedding "
                             f"size), got {x.shape[2]}x{x.shape[3]}")
        if x.dim() == 5:
            n_patients, n_slices = x.shape[0], x.shape[4]
            if n_slices < 1:
                raise ValueError("a patient stack needs at least one slice (S = 0)")
            x = x.permute(0, 4, 1, 2, 3).reshape(n_patients * n_slices, x.shape[1], x.shape[2],
                                                 x.shape[3])
        else:
            n_patients, n_slices = x.shape[0], 1
        h = self.tokens(self.stem(x.float()))
        for block in self.blocks:
            h = block(h)
        return self.head.embed(h).reshape(n_patients, n_slices, self.embed_dim)

    def set_anchor(self, coef: Any, mean: Any, scale: Any) -> None:
        """Set the fixed anchor: Cox coefficients on standardised descriptors, their mean and scale
        (each of length n_descriptors; see :class:`networks.anchor.CoxAnchor`)."""
        self.anchor.set(coef, mean, scale)

    # ---- fine-tuning API -------------------------------------------------------------------
    def freeze(self, stem: bool = True, blocks: Optional[int] = None) -> List[str]:
        """Freeze the stem (+ class token/position embedding) and the first ``blocks`` blocks;
        returns the names of the frozen modules (e.g. ``["stem", "tokens", "blocks.0"]``).

        ``blocks`` defaults to depth // 2. Everything else is unfrozen (``freeze(stem=False,
        blocks=0)`` unfreezes all). Frozen parameters get ``requires_grad=False``; BatchNorm layers
        whose parameters are all frozen stay in eval mode even under ``model.train()`` (their
        running statistics are pre-training's). The state lives in ``requires_grad`` alone, so a
        copied or reloaded network needs no extra bookkeeping.
        """
        k = self.depth // 2 if blocks is None else int(blocks)
        if not 0 <= k <= self.depth:
            raise ValueError(f"blocks must be in [0, {self.depth}], got {blocks}")
        names = (["stem", "tokens"] if stem else []) + [f"blocks.{i}" for i in range(k)]
        for p in self.parameters():
            p.requires_grad_(True)
        for name in names:
            for p in self.get_submodule(name).parameters():
                p.requires_grad_(False)
        self.train(self.training)
        logger.info("freeze: stem=%s, first %d of %d blocks; %d trainable parameters", stem, k,
                    self.depth, sum(p.numel() for p in self.trainable_parameters()))
        return names

    def train(self, mode: bool = True) -> "VisionMambaSurv":
        super().train(mode)
        for sub in self.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                params = list(sub.parameters())
                if params and not any(p.requires_grad for p in params):
                    sub.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the optimiser should update (those not frozen)."""
        return (p for p in self.parameters() if p.requires_grad)

    # ---- rebuilding from weights -----------------------------------------------------------
    @staticmethod
    def kwargs_from_state_dict(state: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
        """Constructor arguments read off a state dict (architecture only: dropout, drop_path and
        scan_backend are not stored in weights and keep their defaults)."""
        try:
            conv1 = state["stem.conv1.conv.weight"]
            embed = int(state["stem.patch_embed.weight"].shape[0])
            tokens = int(state["tokens.pos_embed"].shape[1]) - 1
            a_log = state["blocks.0.mixer.forward_branch.A_log"]
            kwargs: Dict[str, Any] = {
                "in_channels": int(conv1.shape[1]),
                "img_size": int(round(math.sqrt(tokens))) * 8,
                "stem_widths": [int(conv1.shape[0]), int(state["stem.conv2.conv.weight"].shape[0])],
                "embed_dim": embed,
                "depth": len({k.split(".")[1] for k in state if k.startswith("blocks.")}),
                "d_state": int(a_log.shape[1]),
                "d_conv": int(state["blocks.0.mixer.forward_branch.conv1d.weight"].shape[-1]),
                "expand": int(a_log.shape[0]) // embed,
            }
        except KeyError as exc:
            raise ValueError(f"not a VisionMambaSurv state dict (no {exc}); a SurvivalEnsemble's "
                             "keys start with 'members.': use networks.network_from_state_dict")
        if "head.pool.attention_w.weight" in state:
            kwargs["pooling"] = "attention"
            kwargs["attention_dim"] = int(state["head.pool.attention_w.weight"].shape[1])
        if "anchor.coef" in state:
            kwargs["n_descriptors"] = int(state["anchor.coef"].shape[0])
        return kwargs

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], **overrides: Any) -> "VisionMambaSurv":
        """The network rebuilt from its weights alone (loaded strictly); ``overrides`` set the
        arguments weights cannot tell (dropout, drop_path, scan_backend)."""
        net = cls(**{**cls.kwargs_from_state_dict(state), **overrides})
        net.load_state_dict(state, strict=True)
        return net
