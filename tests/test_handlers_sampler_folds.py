"""Every training batch holds an event; folds are by patient, stratified and seeded."""

import numpy as np
import pytest

from voxsurv.training.folds import assign_target_split, split_fold, stratified_patient_folds
from voxsurv.training.sampler import EventBatchSampler


def test_every_batch_has_an_event_and_every_index_is_used_once():
    events = np.zeros(203, dtype=int)
    events[np.random.default_rng(0).choice(203, 20, replace=False)] = 1  # sparse events
    sampler = EventBatchSampler(events, batch_size=16, seed=1)
    for _ in range(3):
        batches = list(sampler)
        assert all(events[b].any() for b in batches)
        assert sorted(i for b in batches for i in b) == list(range(203))
        assert len(batches) == len(sampler)
    assert list(sampler) != list(EventBatchSampler(events, batch_size=16, seed=1))  # epochs reshuffle


def test_ddp_ranks_split_batches_evenly():
    events = np.array([1, 0, 0, 0] * 10)
    r0 = list(EventBatchSampler(events, batch_size=4, seed=0, num_replicas=2, rank=0))
    r1 = list(EventBatchSampler(events, batch_size=4, seed=0, num_replicas=2, rank=1))
    assert len(r0) == len(r1) == 5
    assert sorted(i for b in r0 + r1 for i in b) == list(range(40))


def test_too_few_events_repeat_an_event_and_none_is_an_error():
    events = np.array([1] + [0] * 40)
    assert all(events[b].any() for b in EventBatchSampler(events, batch_size=8))
    with pytest.raises(ValueError, match="all censored"):
        EventBatchSampler(np.zeros(10), batch_size=4)


def test_folds_are_stratified_and_seeded():
    event = np.array([1] * 40 + [0] * 60)
    folds = stratified_patient_folds(event, 5, seed=0)
    assert np.array_equal(folds, stratified_patient_folds(event, 5, seed=0))
    for k in range(5):
        assert (folds == k).sum() == 20 and event[folds == k].sum() == 8


def test_split_fold_and_target_split_are_by_patient():
    import pandas as pd

    df = pd.DataFrame({"patient_id": [f"p{i}" for i in range(50)], "event": [i % 3 == 0 for i in range(50)]})
    train, val = split_fold(df, 2)
    assert set(train.patient_id).isdisjoint(val.patient_id) and len(train) + len(val) == 50
    split = assign_target_split(df, 0.2, seed=4)
    ft = split[split.split == "finetune"]
    assert 8 <= len(ft) <= 12 and ft.event.sum() >= 1


def test_even_sizes_spread_patients_over_equal_risk_sets():
    events = np.array([1, 0, 0] * 32)  # 96 patients
    sampler = EventBatchSampler(events, batch_size=64, seed=3, even_sizes=True)
    batches = list(sampler)
    assert [len(b) for b in batches] == [48, 48] and len(sampler) == 2  # not 64 + 32
    assert sorted(i for b in batches for i in b) == list(range(96))
    assert [len(b) for b in EventBatchSampler(events, batch_size=64, seed=3)] == [64, 32]
    one = list(EventBatchSampler(events[:20], batch_size=20, even_sizes=True))
    assert len(one) == 1 and sorted(one[0]) == list(range(20))  # fine-tuning: one risk set
    sizes = [len(b) for b in EventBatchSampler(np.ones(130, dtype=int), batch_size=64, even_sizes=True)]
    assert sizes == [44, 43, 43]
