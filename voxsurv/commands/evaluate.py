"""`voxsurv evaluate`: all statistics, figures and an HTML report for a predictions file."""

from __future__ import annotations

OUTPUTS = ("metrics.json", "predictions_with_groups.csv", "report.html")


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="C-index, td-AUC, risk groups, calibration, decision curves + report",
        description="Evaluate risk predictions (CSV: patient_id, risk, time_days, event; higher "
                    "risk = shorter survival) against the reference (training) predictions of the "
                    "same model, which supply the split cut-off, the censoring distribution for "
                    "the AUC and the Breslow baseline. --predictions may be the folder `voxsurv predict "
                    "--manifest` wrote (its predictions.csv; patients it excluded are counted).")
    p.add_argument("--predictions", required=True, help="test predictions CSV, or a `voxsurv predict` output folder")
    p.add_argument("--reference", required=True, help="reference (training) predictions CSV or predict folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--times", default="365,730,1095",
                   help="days for td-AUC and decision curves (default 365,730,1095)")
    p.add_argument("--calibration-times", default=None,
                   help="days for calibration (default: median survival and the last time with "
                        ">= 10 at risk in the evaluated data)")
    p.add_argument("--calibration-groups", type=int, default=5, help="quantile groups (default 5)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the C CI")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--title", default="voxsurv evaluation", help="report title")
    p.add_argument("--strict", action="store_true",
                   help="refuse (exit 1) when test and reference share patients, instead of warning")
    p.add_argument("--overwrite", action="store_true", help="replace the results of an earlier evaluation in --out")
    p.set_defaults(handler=run)


def _days(text: str | None, option: str):
    if text is None:
        return None
    from voxsurv.core.errors import InputError

    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{option} must be comma-separated days, got '{text}'",
                         fix=f"e.g. {option} 365,730,1095") from None
    if not values or any(v <= 0 for v in values):
        raise InputError(f"{option} must be positive days, got '{text}'", fix=f"e.g. {option} 365,730,1095")
    return values


def predictions_file(value: str, role: str):
    """A predictions CSV, or the predictions.csv of a `voxsurv predict` output folder; also returns
    that folder's exclusion count (None for a plain CSV)."""
    from pathlib import Path

    from voxsurv.core.errors import InputError
    from voxsurv.core.tables import read_csv_table

    path = Path(value)
    excluded = None
    if path.is_dir():
        folder, path = path, path / "predictions.csv"
        if not path.is_file():
            raise InputError(f"{role} folder has no predictions.csv", path=str(folder),
                             fix="give the --out folder of `voxsurv predict --manifest`, or a predictions CSV")
        if (folder / "exclusions.csv").is_file():
            excluded = len(read_csv_table(folder / "exclusions.csv", "exclusions file"))
    read_csv_table(path, f"{role} file")  # encoding / format errors with the file named
    return path, excluded


def run(args) -> int:
    import json

    from voxsurv.stats import figures as F
    from voxsurv.stats.evaluation import evaluate, predictions_with_groups, read_predictions
    from voxsurv.stats.report import write_report
    from voxsurv.stats.sample_checks import sample_warnings, shared_patients
    from voxsurv.commands import check_output_folder, refuse_to_replace, staged_outputs
    from voxsurv.core.console import warn
    from voxsurv.core.errors import InputError

    out = check_output_folder(args.out)
    refuse_to_replace(out, OUTPUTS, args.overwrite)
    times, cal_times = _days(args.times, "--times"), _days(args.calibration_times, "--calibration-times")
    pred_path, n_excluded = predictions_file(args.predictions, "predictions")
    ref_path, _ = predictions_file(args.reference, "reference")
    predictions = read_predictions(pred_path)
    reference = read_predictions(ref_path)
    shared = shared_patients(predictions.patient_id, reference.patient_id)
    if shared and args.strict:
        raise InputError(f"{len(shared)} of {len(predictions)} test patients are also in the reference (training) "
                         f"file ({', '.join(shared[:5])}{', ...' if len(shared) > 5 else ''})", path=str(pred_path),
                         fix="evaluate on patients the model was not trained on, or drop --strict to evaluate "
                             "anyway with a warning")
    warnings = sample_warnings(predictions.patient_id, predictions.event, reference.patient_id)
    if n_excluded:
        warnings.append(f"{n_excluded} patient(s) were excluded by `voxsurv predict` and are not in this evaluation "
                        f"(see {pred_path.parent / 'exclusions.csv'}); {len(predictions)} evaluated")
    for w in warnings:
        warn(w)
    ev = evaluate(predictions, reference, times=times, n_resamples=args.bootstrap,
                  seed=args.seed, calibration_times=cal_times,
                  calibration_groups=args.calibration_groups)
    metrics = {**ev.metrics, "warnings": warnings, "excluded_by_predict": n_excluded}

    t, e, r = (predictions.time_days.to_numpy(float), predictions.event.to_numpy(int),
               predictions.risk.to_numpy(float))
    with staged_outputs(out) as stage:
        (stage / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False))
        predictions_with_groups(ev).to_csv(stage / "predictions_with_groups.csv", index=False)
        # caption -> (file stem, figure)
        figs = {"Time-dependent ROC": ("td_roc", F.plot_td_roc(ev.td_auc)),
                "Risk score density by outcome": ("risk_density",
                                                  F.plot_risk_density(r, e, ev.metrics["median_split"]["cutoff"])),
                "Kaplan-Meier by risk group (reference median split)":
                    ("km_risk_groups", F.plot_km_groups(t, e, ev.high_risk, ev.split))}
        for ct, cal in ev.calibration.items():
            figs[f"Calibration at {ct:g} d"] = (f"calibration_{ct:g}d", F.plot_calibration(cal))
        for dt, curve in ev.dca.items():
            figs[f"Decision curve at {dt:g} d"] = (f"decision_curve_{dt:g}d", F.plot_decision_curve(curve, dt))
        pngs = {caption: F.save_figure(fig, stage / stem)[0] for caption, (stem, fig) in figs.items()}
        write_report(stage / "report.html", metrics, pngs, args.title)
    m = ev.metrics
    r3 = lambda v: "n/a" if v is None else f"{v:.3g}"  # noqa: E731
    print(f"n = {m['n']} ({m['events']} deaths), C = {m['c_index']['value']:.3f} "
          f"({m['c_index']['ci95'][0]:.3f}-{m['c_index']['ci95'][1]:.3f}), HR {r3(m['hazard_ratio']['value'])}, "
          f"log-rank P {r3(m['logrank']['p'])}; wrote {out / 'report.html'}"
          + (f" ({len(warnings)} warning(s) above)" if warnings else ""))
    return 0
