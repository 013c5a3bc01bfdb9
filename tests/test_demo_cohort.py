"""Demo cohort: deterministic, shaped like the foundation manifest, risk learnable from the image."""

import hashlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from voxsurv.training.demo import generate_demo_cohort

    out = tmp_path_factory.mktemp("demo")
    generate_demo_cohort(out, n_source=12, n_target=10, seed=3)
    return out


def test_manifest_has_foundation_columns_and_splits(demo):
    df = pd.read_csv(demo / "manifest.csv")
    assert {"patient_id", "image", "mask", "time_days", "event", "cohort", "split"} <= set(df.columns)
    assert set(df[df.cohort == "source"].split) == {"train"}
    target = df[df.cohort == "target"]
    assert set(target.split) == {"finetune", "test"}
    assert target[target.split == "finetune"].event.sum() >= 1
    assert "true_risk" not in df.columns  # kept apart so training never sees it
    assert (demo / "true_risk.csv").exists()


def test_volumes_have_lung_tumour_and_spacing(demo):
    import SimpleITK as sitk

    row = pd.read_csv(demo / "manifest.csv").iloc[0]
    img = sitk.ReadImage(str(demo / row.image))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(demo / row["mask"])))
    ct = sitk.GetArrayFromImage(img)
    assert img.GetSpacing() == pytest.approx((1.0, 1.0, 2.5))
    assert ct.shape == mask.shape == (24, 64, 64)
    assert mask.sum() > 200
    assert np.median(ct[(mask == 0) & (ct < -300)]) == pytest.approx(-800, abs=40)
    assert -50 < np.median(ct[mask > 0]) < 100


def test_same_seed_same_bytes(demo, tmp_path):
    from voxsurv.training.demo import generate_demo_cohort

    generate_demo_cohort(tmp_path, n_source=12, n_target=10, seed=3)
    for name in ("manifest.csv", "true_risk.csv"):
        assert (tmp_path / name).read_bytes() == (demo / name).read_bytes()
    a = hashlib.md5((tmp_path / "images" / "tar-004_ct.nii.gz").read_bytes()).hexdigest()
    b = hashlib.md5((demo / "images" / "tar-004_ct.nii.gz").read_bytes()).hexdigest()
    assert a == b


def test_true_risk_orders_survival_and_heterogeneity_is_visible():
    """On a larger sample the true risk has C well above 0.5, and tumour HU spread grows with h."""
    from sksurv.metrics import concordance_index_censored

    from voxsurv.training.demo import SOURCE, RISK_BETA, _survival, simulate_patient

    rng = np.random.default_rng(0)
    h = rng.uniform(size=400)
    time, event = _survival(rng, RISK_BETA * (h - 0.5) / 0.2887, SOURCE)
    assert 0.15 < 1 - event.mean() < 0.5  # some censoring, not most
    assert concordance_index_censored(event.astype(bool), time, h)[0] > 0.7
    spread = []
    for hv in (0.0, 0.5, 1.0):
        ct, mask = simulate_patient(np.random.default_rng(1), SOURCE, hv)
        spread.append(np.std(ct[mask > 0]))
    assert spread[0] < spread[1] < spread[2]


def test_cli_writes_cohort(tmp_path):
    out = subprocess.run([sys.executable, "-m", "voxsurv", "demo-data", "--out", str(tmp_path),
                          "--n-source", "4", "--n-target", "5"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(pd.read_csv(tmp_path / "manifest.csv")) == 9


def test_first_use_writes_the_demo_only_into_an_empty_folder(tmp_path):
    """The bundles write the demo cohort on first use, but never next to somebody's data."""
    from voxsurv.core.errors import InputError
    from voxsurv.training.demo import ensure_demo_cohort

    folder = tmp_path / "demo_data"
    path = ensure_demo_cohort(str(folder), str(folder / "manifest.csv"), n_source=2, n_target=2)
    assert pd.read_csv(path).shape[0] == 4
    assert ensure_demo_cohort(str(folder), str(folder / "manifest.csv")) == str(folder / "manifest.csv")  # kept
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "scan.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="not empty"):
        ensure_demo_cohort(str(tmp_path / "theirs"), str(tmp_path / "theirs" / "manifest.csv"))
    assert sorted(p.name for p in (tmp_path / "theirs").iterdir()) == ["scan.nii.gz"]
