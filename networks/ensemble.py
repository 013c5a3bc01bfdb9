"""SurvivalEnsemble: the mean risk of several networks (e.g. 5 folds x 3 seeds), as one module.

Why one module: the bundles, MONAI Deploy and MONAI Label load ONE state dict (``models/model.pt``)
into ONE ``network_def``. Members live in an ``nn.ModuleList`` (state keys
``members.<i>.<member key>``), so a single ``torch.save(ensemble.state_dict())`` holds them all and
``torch.jit.script`` exports them together.

The ensemble risk is the arithmetic mean of the members' log-hazard risks (a geometric mean of
their hazard ratios). For anchored members, ``anchor_offset`` and ``image_risk`` are the member
means too, so risk = anchor_offset + image_risk holds for the ensemble as for each member.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

__all__ = ["SurvivalEnsemble", "network_from_state_dict"]

logger = logging.getLogger(__name__)

MemberLike = Union[nn.Module, Mapping[str, torch.Tensor]]


class SurvivalEnsemble(nn.Module):
    """Mean risk of ``n_members`` copies of ``member``; forward(x, descriptors=None) -> (B, 1).

    Args:
        member: the member network (e.g. :class:`networks.VisionMambaSurv`); deep-copied
            ``n_members`` times, so the members start identical: load trained weights with
            ``load_state_dict`` (one file) or build with :meth:`from_members`.
        n_members: number of members (>= 1).
    """

    def __init__(self, member: nn.Module, n_members: int) -> None:
        super().__init__()
        if not isinstance(member, nn.Module):
            raise TypeError(f"member must be an nn.Module, got {type(member).__name__}")
        if int(n_members) < 1:
            raise ValueError(f"n_members must be >= 1, got {n_members}")
        self.n_members = int(n_members)
        self.members = nn.ModuleList(copy.deepcopy(member) for _ in range(self.n_members))

    def forward(self, x: torch.Tensor, descriptors: Optional[torch.Tensor] = None) -> torch.Tensor:
        return torch.stack([m(x, descriptors) for m in self.members]).mean(0)

    @torch.jit.export
    def image_risk(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1) mean of the members' image risks."""
        return torch.stack([m.image_risk(x) for m in self.members]).mean(0)

    @torch.jit.export
    def anchor_offset(self, descriptors: torch.Tensor) -> torch.Tensor:
        """(B, 1) mean of the members' anchor offsets (zeros for unanchored members)."""
        return torch.stack([m.anchor_offset(descriptors) for m in self.members]).mean(0)

    def freeze(self, stem: bool = True, blocks: Optional[int] = None) -> List[str]:
        """``freeze`` every member; returns the frozen module names (``members.<i>.stem``, ...)."""
        names: List[str] = []
        for i, m in enumerate(self.members):
            names += [f"members.{i}.{name}" for name in m.freeze(stem=stem, blocks=blocks)]
        return names

    def set_anchor(self, coef: Any, mean: Any, scale: Any) -> None:
        """Set the same anchor on every member (members fitted per fold may instead each get
        their own through ``ensemble.members[i].set_anchor``)."""
        for m in self.members:
            m.set_anchor(coef, mean, scale)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the optimiser should update (those not frozen), over all members."""
        return (p for p in self.parameters() if p.requires_grad)

    @classmethod
    def from_members(cls, members: Sequence[MemberLike],
                     template: Optional[nn.Module] = None) -> "SurvivalEnsemble":
        """An ensemble of trained members: modules, state dicts, or a mix of both.

        Every member must have the same architecture (the same state-dict keys and shapes); each
        is loaded strictly. State dicts need ``template`` (a module of the right architecture), or
        are rebuilt with :func:`network_from_state_dict` when there is none and no module is given.
        """
        members = list(members)
        if not members:
            raise ValueError("from_members needs at least one member")
        if template is None:
            modules = [m for m in members if isinstance(m, nn.Module)]
            template = modules[0] if modules else network_from_state_dict(members[0])
        ensemble = cls(template, len(members))
        reference = template.state_dict()
        for i, m in enumerate(members):
            state = m.state_dict() if isinstance(m, nn.Module) else m
            missing = sorted(set(reference) - set(state))
            extra = sorted(set(state) - set(reference))
            wrong = sorted(k for k in set(reference) & set(state)
                           if tuple(reference[k].shape) != tuple(state[k].shape))
            if missing or extra or wrong:
                raise ValueError(f"member {i} does not match the ensemble's architecture: "
                                 f"missing {missing[:5]}, unexpected {extra[:5]}, "
                                 f"other shape {wrong[:5]}")
            ensemble.members[i].load_state_dict(state, strict=True)
        return ensemble


def network_from_state_dict(state: Mapping[str, torch.Tensor], **overrides: Any) -> nn.Module:
    """A :class:`VisionMambaSurv` or a :class:`SurvivalEnsemble` of them, rebuilt from a state
    dict alone and loaded strictly (``overrides``: dropout, drop_path, scan_backend).

    Accepts MONAI checkpoints holding ``{"model": state_dict}`` as well.
    """
    from networks.vision_mamba import VisionMambaSurv

    if isinstance(state.get("model"), Mapping):
        state = state["model"]
    prefix = "members."
    if any(k.startswith(prefix) for k in state):
        indices = sorted({int(k.split(".")[1]) for k in state if k.startswith(prefix)})
        if indices != list(range(len(indices))):
            raise ValueError(f"ensemble members must be numbered 0..n-1, got {indices}")
        first = {k[len("members.0."):]: v for k, v in state.items() if k.startswith("members.0.")}
        member = VisionMambaSurv(**{**VisionMambaSurv.kwargs_from_state_dict(first), **overrides})
        ensemble = SurvivalEnsemble(member, len(indices))
        ensemble.load_state_dict(state, strict=True)
        return ensemble
    return VisionMambaSurv.from_state_dict(state, **overrides)
