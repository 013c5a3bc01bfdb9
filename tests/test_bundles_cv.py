"""`voxsurv cv` runs every fold of the pretrain bundle and writes per-fold and mean C-index."""

import subprocess
import sys

import numpy as np
import pandas as pd


def test_cv_command_writes_every_fold(tmp_path):
    from voxsurv.training.demo import generate_demo_cohort

    generate_demo_cohort(tmp_path / "data", n_source=10, n_target=3, seed=2)
    out = subprocess.run(
        [sys.executable, "-m", "voxsurv", "cv", "--out", str(tmp_path / "cv"), "--folds", "2", "--set",
         f"dataset_dir={tmp_path / 'data'}", f"cache_dir={tmp_path / 'cache'}", "max_epochs=1", "embed_dim=32",
         "depth=2", "img_size=32", "batch_size=8"],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    table = pd.read_csv(tmp_path / "cv" / "cv_results.csv")
    assert list(table.fold) == [0, 1]
    assert np.isfinite(table.val_c_index).all() and ((table.val_c_index >= 0) & (table.val_c_index <= 1)).all()
    assert table.n_val_patients.sum() == 10  # the folds partition the source cohort
    assert "2-fold CV: mean C-index" in out.stdout
