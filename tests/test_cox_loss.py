"""Issue 4 acceptance: the Cox loss equals R's coxph log-likelihood on R's lung data (Breslow and
Efron), is stable, and gives zero loss and zero gradients for a batch without events."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from voxsurv.stats.cox_loss import CoxPartialLikelihoodLoss, cox_partial_log_likelihood

# R 4.x: coxph(Surv(time, status) ~ age + sex + ph.ecog, data = lung, ties = ...); fit$loglik[2]
R_FITS = {
    "breslow": ((0.0110411363494885, -0.551889569787597, 0.462947040590164), -729.488705176774),
    "efron": ((0.0110667645600735, -0.552612395703631, 0.463728475370428), -729.230121374862),
}


@pytest.fixture(scope="module")
def lung():
    from lifelines.datasets import load_lung

    df = load_lung().dropna(subset=["age", "sex", "ph.ecog"])
    assert len(df) == 227 and int(df["status"].sum()) == 164
    x = torch.tensor(df[["age", "sex", "ph.ecog"]].to_numpy(), dtype=torch.float64)
    label = torch.tensor(df[["time", "status"]].to_numpy(), dtype=torch.float64)
    return x, label


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_equals_r_coxph_loglik_on_lung(lung, ties):
    x, label = lung
    coef, r_loglik = R_FITS[ties]
    eta = x @ torch.tensor(coef, dtype=torch.float64)  # uncentred linear predictor
    loss_sum = CoxPartialLikelihoodLoss(ties=ties, reduction="sum")(eta[:, None], label)
    assert abs(-loss_sum.item() - r_loglik) <= 1e-6
    loss_mean = CoxPartialLikelihoodLoss(ties=ties)(eta, label)
    assert loss_mean.item() == pytest.approx(-r_loglik / 164, abs=1e-12)


def brute_force_loglik(eta, time, event, ties):
    """Textbook formula, one event time at a time, in float64."""
    total = 0.0
    for t in sorted({float(v) for v, e in zip(time, event) if e}):
        at_risk = [math.exp(eta[j]) for j in range(len(eta)) if time[j] >= t]
        tied = [j for j in range(len(eta)) if time[j] == t and event[j]]
        s_r, s_d, d = sum(at_risk), sum(math.exp(eta[j]) for j in tied), len(tied)
        for idx, j in enumerate(tied):
            total += eta[j]
            total -= math.log(s_r - (idx / d if ties == "efron" else 0.0) * s_d)
    return total


@pytest.mark.parametrize("ties,seed", list(itertools.product(["breslow", "efron"], range(3))))
def test_heavy_ties_match_textbook_formula_and_order_does_not_matter(ties, seed):
    g = torch.Generator().manual_seed(seed)
    n = 40
    time = torch.randint(1, 8, (n,), generator=g).double()  # many ties
    event = (torch.rand(n, generator=g) < 0.6).double()
    eta = torch.randn(n, generator=g, dtype=torch.float64)
    expected = brute_force_loglik(eta.tolist(), time.tolist(), event.tolist(), ties)
    got = cox_partial_log_likelihood(eta, time, event, ties=ties)
    assert got.item() == pytest.approx(expected, abs=1e-10)
    perm = torch.randperm(n, generator=g)
    again = cox_partial_log_likelihood(eta[perm], time[perm], event[perm], ties=ties)
    assert again.item() == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_gradients_match_finite_differences(ties):
    g = torch.Generator().manual_seed(7)
    time = torch.randint(1, 5, (12,), generator=g).double()
    event = (torch.rand(12, generator=g) < 0.7).double()
    eta = torch.randn(12, generator=g, dtype=torch.float64, requires_grad=True)
    label = torch.stack([time, event], 1)
    assert torch.autograd.gradcheck(lambda r: CoxPartialLikelihoodLoss(ties)(r, label), (eta,))


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_huge_risks_stay_finite(ties):
    risk = torch.tensor([900.0, 850.0, -900.0, 10.0], requires_grad=True)
    label = torch.tensor([[1.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 0.0]])
    loss = CoxPartialLikelihoodLoss(ties)(risk, label)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(risk.grad).all()


def test_batch_without_events_gives_zero_loss_zero_grads_and_counts(caplog):
    loss_fn = CoxPartialLikelihoodLoss()
    risk = torch.randn(6, 1, requires_grad=True)
    label = torch.stack([torch.arange(1.0, 7.0), torch.zeros(6)], 1)
    with caplog.at_level("WARNING"):
        loss = loss_fn(risk, label)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(risk.grad, torch.zeros_like(risk))
    assert loss_fn.batches_without_events == 1
    assert "without events" in caplog.text
    loss_fn(risk, label)
    assert loss_fn.batches_without_events == 2


def test_bad_labels_raise():
    loss_fn = CoxPartialLikelihoodLoss()
    with pytest.raises(ValueError, match=r"label must be \(B, 2\)"):
        loss_fn(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="0 \\(censored\\) or 1"):
        loss_fn(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="ties"):
        CoxPartialLikelihoodLoss(ties="exact")
