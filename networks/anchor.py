"""A fixed linear Cox predictor on tumour descriptors: the offset an anchored network learns around.

Why: an untrained or weakly trained image network already ranks patients by tumour size and
density, so its C-index says little about texture. Anchoring makes that explicit: the risk is
``anchor_offset(descriptors) + image_risk(image)``, where the anchor is a Cox model on e.g.
[log volume, mean HU] fitted on the training patients BEFORE the network is trained (e.g. with
lifelines) and then held fixed. The network can only add what the descriptors do not already
explain, and its image risk can be read on its own.

The offset is the Cox linear predictor on standardised descriptors,
``((descriptors - mean) / scale) @ coef``, so the coefficients are those of a model fitted on
standardised columns (lifelines' ``CoxPHFitter`` fitted on z-scored columns, or the raw-scale
coefficients times ``scale``). A constant shift of the offset does not change Cox ranks.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

__all__ = ["CoxAnchor"]

Vector = Union[Sequence[float], torch.Tensor]


class CoxAnchor(nn.Module):
    """Fixed linear Cox predictor, (B, n_descriptors) -> (B, 1). Buffers only, no parameters.

    Args:
        n_descriptors: number of descriptor columns; 0 = no anchor (the buffers are then empty
            and not saved, so an unanchored network's state dict has no anchor keys).

    Buffers ``coef``, ``mean``, ``scale`` (float32, length ``n_descriptors``) start at 0, 0, 1
    (offset 0) until :meth:`set` is called; they are saved in the state dict, so the anchor
    travels with the weights.
    """

    def __init__(self, n_descriptors: int = 0) -> None:
        super().__init__()
        if n_descriptors < 0:
            raise ValueError(f"n_descriptors must be >= 0, got {n_descriptors}")
        self.n_descriptors = int(n_descriptors)
        persistent = self.n_descriptors > 0
        self.register_buffer("coef", torch.zeros(self.n_descriptors), persistent=persistent)
        self.register_buffer("mean", torch.zeros(self.n_descriptors), persistent=persistent)
        self.register_buffer("scale", torch.ones(self.n_descriptors), persistent=persistent)

    def set(self, coef: Vector, mean: Vector, scale: Vector) -> None:
        """Set the fitted anchor (coefficients on standardised descriptors, their mean and scale)."""
        if self.n_descriptors == 0:
            raise ValueError("this network has no anchor (n_descriptors=0); build it with "
                             "n_descriptors=len(descriptor names) to anchor it")
        values = {}
        for name, v in (("coef", coef), ("mean", mean), ("scale", scale)):
            t = torch.as_tensor(v, dtype=torch.float32).detach().flatten().cpu()
            if t.numel() != self.n_descriptors:
                raise ValueError(f"anchor {name} needs {self.n_descriptors} values (one per "
                                 f"descriptor), got {t.numel()}")
            if not torch.isfinite(t).all():
                raise ValueError(f"anchor {name} has non-finite values: {t.tolist()}")
            values[name] = t
        if (values["scale"] <= 0).any():
            raise ValueError(f"anchor scale must be > 0, got {values['scale'].tolist()}")
        for name, t in values.items():
            getattr(self, name).copy_(t)

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        if self.n_descriptors == 0:  # no anchor: offset 0 whatever descriptors are passed
            return torch.zeros(descriptors.shape[0], 1, dtype=self.coef.dtype,
                               device=descriptors.device)
        if descriptors.dim() != 2 or descriptors.shape[1] != self.n_descriptors:
            raise ValueError(f"descriptors must be (batch, {self.n_descriptors}), got shape "
                             f"{list(descriptors.shape)}")
        d = descriptors.to(self.coef.dtype)
        # detached: the anchor is fixed, no gradient flows into it or through it
        return (((d - self.mean) / self.scale) @ self.coef).unsqueeze(1).detach()
