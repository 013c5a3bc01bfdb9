"""The study's split file: the honest-comparison line of issue 8 (same patients, same roles)."""

import numpy as np
import pandas as pd
import pytest

from voxsurv.study.split import ROLES, make_split, read_split

SPLIT = "docs/results/real_split.csv"


def test_split_file_is_the_seeded_event_stratified_20_80_split(lung_crops):
    from voxsurv.data.manifest import load_manifest

    manifest = load_manifest(lung_crops / "manifest.csv", check_files=False)
    split = read_split(SPLIT)
    excluded = pd.read_csv("docs/results/real_split_excluded.csv")
    # the 5 real empty masks are listed and in no role
    assert len(excluded) == 5 and not set(excluded.patient_id) & set(split.patient_id)
    assert set(split.role) == set(ROLES)
    # re-making it from the manifest with the same seed gives the identical file
    again = make_split(manifest, excluded=dict(zip(excluded.patient_id, excluded.problem)), seed=0)
    pd.testing.assert_frame_equal(split.reset_index(drop=True), again.astype(str))
    m = split.merge(manifest.drop(columns="cohort"), on="patient_id")
    assert (m[m.role == "source"].cohort == "lung1").all()
    assert (m[m.role != "source"].cohort == "radiogenomics").all()
    tgt = m[m.role != "source"]
    ft = tgt[tgt.role == "finetune"]
    assert len(ft) == pytest.approx(0.2 * len(tgt), abs=1.5)
    # stratified: the fine-tune event rate is within one patient of the target's
    assert abs(ft.event.sum() - 0.2 * tgt.event.sum()) <= 1


def test_split_depends_on_the_seed_only():
    rng = np.random.default_rng(1)
    man = pd.DataFrame({"patient_id": [f"p{i:03d}" for i in range(60)],
                        "cohort": ["a"] * 20 + ["b"] * 40, "event": rng.integers(0, 2, 60)})
    a = make_split(man, "a", "b", seed=3)
    assert a.equals(make_split(man.sample(frac=1, random_state=0), "a", "b", seed=3))
    assert not a.equals(make_split(man, "a", "b", seed=4))


def test_mask_problem_uses_the_bundles_chain_and_names_the_patient(lung_crops):
    from voxsurv.study.split import mask_problem

    root = str(lung_crops) + "/images/"
    assert "lung1-003" in mask_problem(root + "lung1-003_ct.nii.gz", root + "lung1-003_gtv.nii.gz", "lung1-003")
    assert mask_problem(root + "lung1-002_ct.nii.gz", root + "lung1-002_gtv.nii.gz", "lung1-002") is None
