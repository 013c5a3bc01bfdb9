"""The anchor of an anchored network: a Cox model on the training patients' descriptors, fitted
before training (voxsurv.training.anchor) and set on the network, whose fixed offset equals the
linear predictor lifelines gives on the raw descriptors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxsurv.training.anchor import anchor_network, fit_anchor


@pytest.fixture(scope="module")
def rossi():
    from lifelines.datasets import load_rossi

    return load_rossi()


def test_offsets_equal_lifelines_linear_predictor_on_raw_descriptors(rossi):
    """Our fit standardises the columns; lifelines fitted on the RAW columns must give the same
    risks (its log partial hazard is centred at the training mean, as our offset is)."""
    from lifelines import CoxPHFitter

    d = rossi[["age", "prio"]].to_numpy(float)
    anchor = fit_anchor(d, rossi["week"], rossi["arrest"], names=["age", "prio"])
    raw = CoxPHFitter().fit(rossi[["week", "arrest", "age", "prio"]], duration_col="week", event_col="arrest")
    expected = raw.predict_log_partial_hazard(rossi[["age", "prio"]]).to_numpy()
    assert np.allclose(anchor.offset(d), expected, atol=1e-6)
    # coefficients per standard deviation = raw coefficients x the column's SD (ddof=0)
    assert np.allclose(anchor.coef, raw.params_[["age", "prio"]].to_numpy() * d.std(axis=0), rtol=1e-5)
    assert anchor.n_patients == 432 and anchor.n_events == int(rossi["arrest"].sum())
    assert anchor.coef[0] < 0 < anchor.coef[1]  # older: fewer re-arrests; more priors: more (lifelines' rossi fit)


def test_anchor_is_set_on_the_network_and_its_offset_matches(rossi):
    from networks import VisionMambaSurv

    net = VisionMambaSurv(in_channels=3, img_size=16, embed_dim=16, depth=1, n_descriptors=2)
    rows = rossi.head(60)
    samples = [{"descriptors": torch.tensor([r.age, r.prio], dtype=torch.float32),
                "label": torch.tensor([r.week, r.arrest, i], dtype=torch.float32)} for i, r in enumerate(rows.itertuples())]
    anchor = anchor_network(net, samples)
    d = torch.stack([s["descriptors"] for s in samples])
    got = net.anchor_offset(d).reshape(-1).double().numpy()
    assert np.allclose(got, anchor.offset(d.numpy()), atol=1e-4)
    assert np.abs(got).max() > 0.05  # a real, non-zero anchor
    # the network's risk = anchor offset + image risk, and the anchor does not train
    x = torch.randn(len(samples), 3, 16, 16, 2)
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net(x, d), net.anchor_offset(d) + net.image_risk(x), atol=1e-5)
    assert not any("anchor" in n for n, _ in net.named_parameters())


def test_all_censored_or_constant_descriptors_are_refused():
    d = np.column_stack([np.linspace(0, 1, 10), np.arange(10.0)])
    with pytest.raises(ValueError, match="all training patients are censored"):
        fit_anchor(d, np.arange(1, 11), np.zeros(10))
    with pytest.raises(ValueError, match="constant"):
        fit_anchor(np.column_stack([d[:, 0], np.ones(10)]), np.arange(1, 11), np.ones(10))
    with pytest.raises(ValueError, match="non-finite"):
        fit_anchor(np.where(np.eye(10, 2) > 0, np.nan, d), np.arange(1, 11), np.ones(10))
