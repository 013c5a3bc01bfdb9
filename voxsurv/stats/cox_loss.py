"""Negative Cox partial log-likelihood as a loss for risk networks.

Convention: ``risk`` is the linear predictor (log hazard ratio); higher means shorter survival.
Risk sets are ``{j : t_j >= t_i}`` (R's ``coxph``). Tied event times are handled with Breslow's
or Efron's approximation (Efron 1977, JASA 72:557; R's default and ``survival::coxph`` formula):

    Breslow:  sum_i delta_i [eta_i - log sum_{j in R(t_i)} exp(eta_j)]
    Efron:    sum over event times t with d tied events D(t):
              sum_{l=0}^{d-1} [eta_{D,l} - log(S_R(t) - (l/d) S_D(t))]

where ``S_R`` sums ``exp(eta)`` over the risk set and ``S_D`` over the tied events. Log risk-set
sums come from ``torch.logcumsumexp`` over times sorted in decreasing order, so no ``exp(eta)`` is
ever formed; Efron's correction is ``log1p(-(l/d) exp(log S_D - log S_R))`` with argument in
(-1, 0]. Within a mini-batch, risk sets are confined to the batch, so the loss depends on the
batch size (see FIELD_NOTES).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["CoxPartialLikelihoodLoss", "cox_partial_log_likelihood"]

logger = logging.getLogger(__name__)

TIES = ("breslow", "efron")


def _check(risk: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if risk.dim() == 2 and risk.shape[1] == 1:
        risk = risk[:, 0]
    if risk.dim() != 1:
        raise ValueError(f"risk must be (B,) or (B, 1), got shape {tuple(risk.shape)}")
    if label.dim() != 2 or label.shape[1] != 2 or label.shape[0] != risk.shape[0]:
        raise ValueError(
            f"label must be (B, 2) = [time, event] with B = {risk.shape[0]}, got shape "
            f"{tuple(label.shape)}. Fix: stack time and event (0/1) per sample."
        )
    time, event = label[:, 0], label[:, 1]
    if not torch.isfinite(time).all():
        raise ValueError("label times must be finite (no NaN/inf survival times)")
    if not ((event == 0) | (event == 1)).all():
        raise ValueError("label events must be 0 (censored) or 1 (event)")
    return risk, time, event.to(torch.bool)  # times keep their dtype: no spurious float32 ties


def cox_partial_log_likelihood(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor,
                               ties: str = "efron") -> torch.Tensor:
    """Cox partial log-likelihood (a sum over events, differentiable in ``risk``).

    Args:
        risk: (B,) linear predictor.
        time: (B,) follow-up times.
        event: (B,) bool or 0/1, True where the event was observed.
        ties: ``"efron"`` or ``"breslow"``.
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    event = event.to(torch.bool)
    order = torch.argsort(time, descending=True, stable=True)
    eta, t, ev = risk[order], time[order], event[order]
    # distinct times in decreasing order; the risk set of a time ends at its group's last index
    _, counts = torch.unique_consecutive(t, return_counts=True)
    group = torch.repeat_interleave(torch.arange(counts.numel(), device=risk.device), counts)
    log_cum = torch.logcumsumexp(eta, dim=0)
    log_risk_set = log_cum[torch.cumsum(counts, 0) - 1][group]
    if ties == "breslow":
        return (eta - log_risk_set)[ev].sum()

    # Efron: per tied group, log S_D by a grouped logsumexp over its events
    n_groups = counts.numel()
    ev_f = ev.to(eta.dtype)
    neg_inf = torch.full((n_groups,), float("-inf"), dtype=eta.dtype, device=eta.device)
    masked = torch.where(ev, eta, torch.full_like(eta, float("-inf")))
    group_max = neg_inf.scatter_reduce(0, group, masked, reduce="amax").detach()
    safe_max = torch.where(torch.isfinite(group_max), group_max, torch.zeros_like(group_max))
    shifted = torch.where(ev, torch.exp(eta - safe_max[group]), torch.zeros_like(eta))
    sum_d = torch.zeros(n_groups, dtype=eta.dtype, device=eta.device).index_add(0, group, shifted)
    d_count = torch.zeros(n_groups, dtype=eta.dtype, device=eta.device).index_add(0, group, ev_f)
    # rank l of each event within its group: 0, 1, ..., d-1
    cum_ev = torch.cumsum(ev_f, 0)
    group_start = torch.cumsum(counts, 0) - counts
    before = (cum_ev - ev_f)[group_start][group]
    rank = cum_ev - ev_f - before
    ev_idx = ev.nonzero(as_tuple=True)[0]
    g = group[ev_idx]
    log_sum_d = torch.log(sum_d[g]) + safe_max[g]
    ratio = torch.exp(log_sum_d - log_risk_set[ev_idx]).clamp(max=1.0)
    frac = rank[ev_idx] / d_count[g]
    terms = eta[ev_idx] - log_risk_set[ev_idx] - torch.log1p(-frac * ratio)
    return terms.sum()


class CoxPartialLikelihoodLoss(nn.Module):
    """Negative Cox partial log-likelihood, averaged over the events of the batch.

    Called as ``loss(risk, label)`` with ``risk`` (B, 1) or (B,) and ``label`` (B, 2) float
    ``[time, event]``, as MONAI's default ``prepare_batch`` delivers it. A batch without events
    carries no information: the loss is zero with zero gradients (never NaN), and the count of such
    batches is kept in ``batches_without_events`` (a warning is logged the first time).

    Args:
        ties: ``"efron"`` (R's default) or ``"breslow"``.
        reduction: ``"mean"`` divides by the number of events (not by distinct event times, as
            torchsurv does); ``"sum"`` gives the negative log-likelihood itself.
    """

    def __init__(self, ties: str = "efron", reduction: str = "mean") -> None:
        super().__init__()
        if ties not in TIES:
            raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.ties = ties
        self.reduction = reduction
        self.batches_without_events = 0

    def forward(self, risk: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        risk, time, event = _check(risk, label)
        n_events = int(event.sum())
        if n_events == 0:
            self.batches_without_events += 1
            if self.batches_without_events == 1:
                logger.warning("Cox loss: a batch without events gives loss 0 (no risk-set "
                               "information); counted in batches_without_events.")
            return (risk * 0.0).sum()
        nll = -cox_partial_log_likelihood(risk, time, event, ties=self.ties)
        return nll / n_events if self.reduction == "mean" else nll

    def extra_repr(self) -> str:
        return f"ties={self.ties!r}, reduction={self.reduction!r}"
