"""`voxsurv cv`: run all cross-validation folds of the pretrain bundle, write per-fold and mean C."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("cv", help="k-fold cross-validation (by patient, stratified on event) of a "
                                  "training bundle: per-fold and mean validation C-index")
    p.add_argument("--bundle", default="pretrain", help="bundle under bundles/ (default: pretrain)")
    p.add_argument("--out", required=True, help="output folder (fold_<k>/ per fold, cv_results.csv)")
    p.add_argument("--folds", type=int, default=5)
    # re-running on an existing --out resumes each fold from its checkpoint (finished folds are not retrained)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="bundle config overrides, e.g. manifest=/path/manifest.csv cohort=lung1 max_epochs=50")
    p.set_defaults(handler=run)


def run(args) -> int:
    import csv
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from voxsurv.training.runner import bundle_root, say

    root = Path(bundle_root(args.bundle))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = []
    for item in args.set:
        key, _, value = item.partition("=")
        overrides += [f"--{key}", value]
    rows = []
    for fold in range(args.folds):
        fold_dir = out / f"fold_{fold}"
        cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(root / "configs" / "train.yaml"),
               "--bundle_root", str(root), "--fold", str(fold), "--n_folds", str(args.folds),
               "--output_dir", str(fold_dir), *overrides]
        say(f"fold {fold + 1}/{args.folds}: {' '.join(cmd[1:])}")
        if subprocess.run(cmd).returncode != 0:
            say(f"fold {fold} failed; stopping")
            return 1
        metrics = {}
        with open(fold_dir / "metrics.csv") as f:  # MetricsSaver: "name,value" of the last validation
            for line in csv.reader(f, delimiter=","):
                if len(line) >= 2:
                    metrics[line[0].strip()] = float(line[1])
        n_val = len(pd.read_csv(fold_dir / "predictions_val.csv")) if (fold_dir / "predictions_val.csv").exists() else None
        rows.append({"fold": fold, "val_c_index": metrics.get("val_c_index", float("nan")), "n_val_patients": n_val})
        say(f"fold {fold}: validation C-index (last epoch) {rows[-1]['val_c_index']:.3f}")
    table = pd.DataFrame(rows)
    c = table["val_c_index"].to_numpy()
    table.to_csv(out / "cv_results.csv", index=False)
    say(f"{args.folds}-fold CV: mean C-index {np.nanmean(c):.3f} (SD {np.nanstd(c, ddof=1):.3f}); "
        f"per fold {', '.join(f'{v:.3f}' for v in c)} -> {out / 'cv_results.csv'}")
    return 0
