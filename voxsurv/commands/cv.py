"""`voxsurv cv`: run all cross-validation folds of the pretrain bundle, write per-fold and mean C."""

from __future__ import annotations

MIN_FOLDS = 2


def register(sub) -> None:
    p = sub.add_parser("cv", help="k-fold cross-validation (by patient, stratified on event) of a "
                                  "training bundle: per-fold and mean validation C-index",
                       description="Runs every fold of a training bundle (`python -m monai.bundle run`, one process "
                                   "per fold) into OUT/fold_<k>/ and writes OUT/cv_results.csv. Re-running on the same "
                                   "--out resumes each fold from its checkpoint.")
    p.add_argument("--bundle", default="bundles/pretrain",
                   help="training bundle folder (default: bundles/pretrain; a bare name such as 'pretrain' is a "
                        "deprecated spelling)")
    p.add_argument("--out", required=True, help="output folder (fold_<k>/ per fold, cv_results.csv)")
    p.add_argument("--folds", type=_folds, default=5, help=f"number of folds, at least {MIN_FOLDS} (default 5)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="bundle config overrides, e.g. manifest=/path/manifest.csv cohort=lung1 max_epochs=50")
    p.set_defaults(handler=run)


def _folds(text: str) -> int:
    import argparse

    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if k < MIN_FOLDS:
        raise argparse.ArgumentTypeError(f"cross-validation needs at least {MIN_FOLDS} folds (one to validate, "
                                         f"the rest to train), got {k}")
    return k


def _bundle(value: str):
    from pathlib import Path

    from voxsurv.commands import resolve_bundle
    from voxsurv.core.console import deprecated_option

    if "/" not in value and not Path(value).is_dir():
        deprecated_option(f"--bundle {value}", f"--bundle bundles/{value}", "--bundle takes a folder in every command")
        value = f"bundles/{value}"
    bundle = resolve_bundle(value, "training")
    if not (bundle / "configs" / "train.yaml").is_file():
        from voxsurv.core.errors import InputError

        raise InputError("not a training bundle (configs/train.yaml missing)", path=str(bundle),
                         fix="pass --bundle bundles/pretrain (or another training bundle folder)")
    return bundle


def _overrides(items: list[str]) -> list[str]:
    from voxsurv.core.errors import UsageError

    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set takes KEY=VALUE pairs, got {item!r}")
        out += [f"--{key.strip()}", value]
    return out


def _read_fold_metrics(fold_dir):
    import csv

    from voxsurv.core.errors import InputError

    path = fold_dir / "metrics.csv"
    if not path.is_file():
        raise InputError("the fold finished without writing metrics.csv", path=str(path),
                         fix="check the fold's log above; the bundle's MetricsSaver must be enabled")
    metrics = {}
    with open(path) as f:  # MetricsSaver: "name,value" of the last validation
        for line in csv.reader(f, delimiter=","):
            if len(line) >= 2:
                try:
                    metrics[line[0].strip()] = float(line[1])
                except ValueError:
                    continue
    return metrics


def run(args) -> int:
    import subprocess
    import sys

    from voxsurv.commands import check_output_folder
    from voxsurv.core.console import progress_bar, verbose
    from voxsurv.core.errors import InputError

    root = _bundle(args.bundle)
    out = check_output_folder(args.out)
    overrides = _overrides(args.set)
    import numpy as np
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    bar = progress_bar(total=args.folds, desc="cv", unit="fold")
    for fold in range(args.folds):
        fold_dir = out / f"fold_{fold}"
        cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(root / "configs" / "train.yaml"),
               "--bundle_root", str(root), "--fold", str(fold), "--n_folds", str(args.folds),
               "--output_dir", str(fold_dir), *overrides]
        bar.set_postfix_str(f"fold {fold + 1}/{args.folds}")
        fold_dir.mkdir(parents=True, exist_ok=True)
        log = fold_dir / "log.txt"
        with open(log, "w") as f:  # the fold's own output: on the terminal with --verbose, else in its log
            stream = None if verbose() else f
            code = subprocess.run(cmd, stdout=stream, stderr=subprocess.STDOUT if stream else None).returncode
        if code != 0:
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            last = f"; last line: {lines[-1].strip()}" if lines else ""
            raise InputError(f"fold {fold} of {args.folds} failed (exit {code}){last}", path=str(log),
                             fix="read the fold's log (or re-run with --verbose); check --set overrides and the "
                                 "bundle's manifest")
        metrics = _read_fold_metrics(fold_dir)
        pred = fold_dir / "predictions_val.csv"
        n_val = len(pd.read_csv(pred)) if pred.exists() else None
        rows.append({"fold": fold, "val_c_index": metrics.get("val_c_index", float("nan")), "n_val_patients": n_val})
        bar.update(1)
        print(f"fold {fold}: validation C-index (last epoch) {rows[-1]['val_c_index']:.3f}", flush=True)
    bar.close()
    table = pd.DataFrame(rows)
    c = table["val_c_index"].to_numpy()
    from voxsurv.core.tables import write_csv_atomic

    write_csv_atomic(table, out / "cv_results.csv")
    print(f"{args.folds}-fold CV: mean C-index {np.nanmean(c):.3f} (SD {np.nanstd(c, ddof=1):.3f}); "
          f"per fold {', '.join(f'{v:.3f}' for v in c)} -> {out / 'cv_results.csv'}")
    return 0
