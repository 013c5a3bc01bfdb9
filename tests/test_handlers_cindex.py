"""The patient-level C-index handler equals scikit-survival on the same patient-level data."""

import numpy as np
import pandas as pd
import pytest
import torch
from ignite.engine import Engine
from sksurv.metrics import concordance_index_censored

from voxsurv.training.concordance import ConcordanceIndex, patient_risks


def _slices(seed=0, n_patients=30):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        time, event = rng.uniform(10, 1000), int(rng.uniform() < 0.6)
        for _ in range(rng.integers(1, 6)):
            rows.append((p, time, event, rng.normal()))
    return pd.DataFrame(rows, columns=["patient", "time", "event", "risk"]).sample(frac=1, random_state=seed)


@pytest.mark.parametrize("aggregation", ["mean", "max"])
def test_handler_equals_sksurv_on_patient_level_data(aggregation):
    df = _slices()
    engine = Engine(lambda e, batch: batch)
    metric = ConcordanceIndex(aggregation=aggregation)
    metric.attach(engine, "c")
    batches = [(torch.tensor(b.risk.values).reshape(-1, 1),
                torch.tensor(b[["time", "event", "patient"]].values, dtype=torch.float32))
               for _, b in df.groupby(np.arange(len(df)) // 7)]
    engine.run(batches, max_epochs=2)  # the second epoch must not accumulate the first
    per_patient = df.groupby("patient").agg(time=("time", "first"), event=("event", "first"),
                                            risk=("risk", aggregation))
    expected = concordance_index_censored(per_patient.event.astype(bool).values,
                                          per_patient.time.astype(np.float32).values, per_patient.risk.values)[0]
    assert engine.state.metrics["c"] == pytest.approx(expected, abs=1e-12)
    assert len(metric.patient_table["risk"]) == 30
    # slice-level C (what a naive metric would give) differs: the aggregation matters
    slice_c = concordance_index_censored(df.event.astype(bool).values, df.time.values, df.risk.values)[0]
    assert slice_c != pytest.approx(expected, abs=1e-6)


def test_without_patient_column_each_row_is_a_patient_and_no_event_is_nan():
    t = patient_risks(torch.tensor([0.1, 0.5]), torch.tensor([[5.0, 1.0], [3.0, 0.0]]))
    assert list(t["patient_number"]) == [0, 1]
    from voxsurv.training.concordance import harrell_c_index

    assert np.isnan(harrell_c_index([1, 2], [0, 0], [0.1, 0.2]))
    with pytest.raises(ValueError):
        patient_risks(torch.zeros(3), torch.zeros(2, 3))
