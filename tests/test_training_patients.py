"""The bundles' data module (voxsurv.training.patients.SurvivalPatients) on real lung crops: one
sample per patient built by custom_transforms.pipeline, statistics from the training patients
only, exclusions recorded, and a second run served entirely from the per-patient cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

FEATURES = ["firstorder_Mean", "glcm_Contrast"]
EMPTY = "lung1-003"  # a real empty mask
TRAIN = ["lung1-002", EMPTY, "lung1-004", "lung1-005", "lung1-014", "lung1-015"]
VAL = ["lung1-007", "lung1-008"]
TEST = ["radiogenomics-202"]


@pytest.fixture(scope="module")
def manifest(lung_crops, tmp_path_factory):
    m = pd.read_csv(lung_crops / "manifest.csv")
    keep = TRAIN + VAL + TEST
    m = m[m.patient_id.isin(keep)].copy()
    if set(m.patient_id) != set(keep):
        pytest.skip(f"lung_crops lacks {set(keep) - set(m.patient_id)}")
    m["split"] = m.patient_id.map(lambda p: "train" if p in TRAIN else "val" if p in VAL else "test")
    for col in ("image", "mask"):
        m[col] = [str(lung_crops / p) for p in m[col]]
    path = tmp_path_factory.mktemp("patients") / "manifest.csv"
    m.to_csv(path, index=False)
    return path


def _data(manifest, root, **kw):
    from custom_transforms.pipeline import stack_preprocessing, volume_preprocessing
    from functools import partial

    from voxsurv.training.patients import SurvivalPatients

    args = dict(cohort=None, train_split="train", val_split="val", test_split="test", fold=None, workers=0,
                cache_volumes=True)
    args.update(kw)
    features = args.pop("features", FEATURES)
    return SurvivalPatients(manifest, volume_preprocessing(features, maps_cache_dir=root / "maps"),
                            partial(stack_preprocessing, features=features, img_size=32), cache_dir=root / "cache",
                            output_dir=root / "out", features=features, **args)


@pytest.fixture(scope="module")
def prepared(manifest, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    data = _data(manifest, root)
    return root, data, {role: data.samples(role) for role in ("train", "val", "test")}


def test_one_sample_per_patient_with_label_descriptors_and_stack(prepared, manifest):
    from custom_transforms.pipeline import volume_preprocessing

    root, data, samples = prepared
    m = pd.read_csv(manifest).reset_index(drop=True)
    assert [s["patient_id"] for s in samples["train"]] == [p for p in m.patient_id if p in TRAIN and p != EMPTY]
    assert [s["patient_id"] for s in samples["val"]] == [p for p in m.patient_id if p in VAL]
    for s in samples["train"] + samples["val"] + samples["test"]:
        c, h, w, n = s["image"].shape
        assert (c, h, w) == (2 + len(FEATURES), 32, 32) and n >= 1
        assert s["image"].dtype == torch.float32 and torch.isfinite(s["image"]).all()
        mask = s["image"][-1]  # mask channel (resized: fractional at the tumour edge)
        assert mask.min() >= -1e-5 and mask.max() <= 1 + 1e-5 and (mask.amax(dim=(0, 1)) > 0.5).all()
        row = m[m.patient_id == s["patient_id"]].iloc[0]
        assert s["label"].tolist() == [float(row.time_days), float(row.event), float(row.name)]
    # descriptors are the volume stage's, measured before any scaling
    first = samples["val"][0]
    row = m[m.patient_id == first["patient_id"]].iloc[0]
    volume = volume_preprocessing(FEATURES, maps_cache_dir=root / "maps")({"image": row["image"], "mask": row["mask"]})
    assert torch.allclose(first["descriptors"], torch.as_tensor(volume["descriptors"]).float())
    table = data.table().set_index("patient_id")
    assert set(table.index) == {s["patient_id"] for r in samples.values() for s in r}
    for s in samples["train"]:
        assert table.loc[s["patient_id"], "n_slices"] == s["image"].shape[-1]
        assert table.loc[s["patient_id"], "log_volume_ml"] == pytest.approx(float(s["descriptors"][0]))


def test_empty_mask_is_excluded_and_recorded(prepared):
    root, data, samples = prepared
    excluded = pd.read_csv(root / "out" / "excluded_patients.csv")
    assert list(excluded.patient_id) == [EMPTY]
    assert excluded.role[0] == "train" and EMPTY in excluded.problem[0]


def test_map_statistics_are_fitted_on_the_training_patients_only(prepared, manifest):
    from custom_transforms.pipeline import volume_preprocessing
    from voxsurv.maps.normalise import MapStatistics

    root, data, _ = prepared
    saved = MapStatistics.load(root / "out" / "map_statistics.json")
    m = pd.read_csv(manifest)
    chain = volume_preprocessing(FEATURES, maps_cache_dir=root / "maps")

    def maps_of(ids):
        for r in m[m.patient_id.isin(ids)].itertuples():
            if r.patient_id != EMPTY:
                d = chain({"image": r.image, "mask": r.mask})
                yield np.asarray(d["maps"]), np.asarray(d["mask"])[0]

    train_only = MapStatistics.fit(maps_of(TRAIN), FEATURES)
    with_val = MapStatistics.fit(maps_of(TRAIN + VAL), FEATURES)
    assert list(saved.names) == FEATURES
    assert np.allclose(saved.mean, train_only.mean) and np.allclose(saved.std, train_only.std)
    assert not np.allclose(saved.mean, with_val.mean)


def test_a_second_run_reads_every_patient_from_the_cache(prepared, manifest, monkeypatch):
    from voxsurv.training.patients import SurvivalPatients

    root, _, first = prepared

    def no_volumes(self, rows):
        raise AssertionError("a cached patient went through volume preprocessing again")

    monkeypatch.setattr(SurvivalPatients, "_volume_dataset", no_volumes)
    again = _data(manifest, root)
    for role in ("train", "val", "test"):
        second = again.samples(role)
        assert [s["patient_id"] for s in second] == [s["patient_id"] for s in first[role]]
        for a, b in zip(first[role], second):
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["descriptors"], b["descriptors"])
    assert [e["patient_id"] for e in again.excluded] == [EMPTY]  # the exclusion is cached too


def test_statistics_file_with_more_maps_is_selected_by_features(prepared, manifest, tmp_path):
    from voxsurv.maps.normalise import MapStatistics

    root, _, first = prepared
    stats = MapStatistics.load(root / "out" / "map_statistics.json")
    wider = MapStatistics(names=["glcm_Contrast", "firstorder_Energy", "firstorder_Mean"],
                          mean=np.array([stats.mean[1], 5.0, stats.mean[0]]), std=np.array([stats.std[1], 2.0, stats.std[0]]),
                          count=np.array([stats.count[1], 1, stats.count[0]]), settings=stats.settings)
    wider.save(tmp_path / "stats.json")
    data = _data(manifest, root, map_statistics=str(tmp_path / "stats.json"))
    again = data.samples("val")
    assert list(data.map_statistics().names) == FEATURES
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(first["val"], again))


def test_roles_cross_validation_fold_and_drawn_split(manifest, tmp_path):
    from voxsurv.core.errors import InputError

    m = pd.read_csv(manifest)
    folds = [_data(manifest, tmp_path, fold=k, n_folds=2, test_split=None) for k in (0, 1)]
    val = [set(d.patients("val").patient_id) for d in folds]
    assert val[0].isdisjoint(val[1]) and val[0] | val[1] == set(TRAIN)
    assert set(folds[0].patients("train").patient_id) == val[1]
    no_split = tmp_path / "nosplit.csv"
    m.drop(columns=["split"]).to_csv(no_split, index=False)
    drawn = _data(no_split, tmp_path, train_split="finetune", val_split=None, test_split="test", finetune_fraction=0.3)
    written = pd.read_csv(tmp_path / "out" / "splits.csv")
    assert set(written.split) == {"finetune", "test"}
    assert set(drawn.patients("train").patient_id) == set(written[written.split == "finetune"].patient_id)
    m.loc[m.split == "train", "event"] = 0
    m.to_csv(tmp_path / "censored.csv", index=False)
    with pytest.raises(InputError, match="has 0 events"):
        _data(tmp_path / "censored.csv", tmp_path)


def test_cache_keys_change_with_every_preprocessing_setting():
    """A stack cached under one setting must never be served for another (features, spacing,
    map settings, image size, field of view, statistics); where the maps cache lives does not matter."""
    from custom_transforms.pipeline import stack_preprocessing, volume_preprocessing
    from voxsurv.maps.normalise import MapStatistics

    from voxsurv.training.stack_cache import describe_transform, settings_hash

    def key(volume, stack):
        return settings_hash(describe_transform(volume), describe_transform(stack))

    stats = MapStatistics(names=FEATURES, mean=np.array([10.0, 2.0]), std=np.array([3.0, 1.0]), count=np.array([5, 5]))
    other = MapStatistics(names=FEATURES, mean=np.array([10.0, 2.5]), std=np.array([3.0, 1.0]), count=np.array([5, 5]))
    base = key(volume_preprocessing(FEATURES), stack_preprocessing(stats, features=FEATURES))
    variants = [
        key(volume_preprocessing(FEATURES[:1]), stack_preprocessing(stats, features=FEATURES[:1])),
        key(volume_preprocessing(FEATURES, pixdim=(1, 1, 3)), stack_preprocessing(stats, features=FEATURES)),
        key(volume_preprocessing(FEATURES), stack_preprocessing(stats, features=FEATURES, img_size=32)),
        key(volume_preprocessing(FEATURES), stack_preprocessing(stats, features=FEATURES, fov_margin=0.3)),
        key(volume_preprocessing(FEATURES), stack_preprocessing(stats, features=FEATURES, min_area_mm2=5.0)),
        key(volume_preprocessing(FEATURES), stack_preprocessing(other, features=FEATURES)),
        key(volume_preprocessing([]), stack_preprocessing(None, features=[])),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    assert key(volume_preprocessing(FEATURES, maps_cache_dir="/somewhere"), stack_preprocessing(stats, features=FEATURES)) == base
