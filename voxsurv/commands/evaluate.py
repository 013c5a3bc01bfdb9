"""`voxsurv evaluate`: all statistics, figures and an HTML report for a predictions file."""

from __future__ import annotations

import logging

from voxsurv.commands import reports_bad_input

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="C-index, td-AUC, risk groups, calibration, decision curves + report",
        description="Evaluate risk predictions (CSV: patient_id, risk, time_days, event; higher "
                    "risk = shorter survival) against the reference (training) predictions of the "
                    "same model, which supply the split cut-off, the censoring distribution for "
                    "the AUC and the Breslow baseline.")
    p.add_argument("--predictions", required=True, help="test predictions CSV")
    p.add_argument("--reference", required=True, help="reference (training) predictions CSV")
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
    p.set_defaults(handler=run)


def _days(text: str | None):
    if text is None:
        return None
    from voxsurv.errors import InputError

    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"times must be comma-separated days, got '{text}'") from None
    if not values or any(v <= 0 for v in values):
        raise InputError(f"times must be positive days, got '{text}'")
    return values


@reports_bad_input
def run(args) -> int:
    import json
    from pathlib import Path

    from survival import figures as F
    from survival.evaluation import evaluate, predictions_with_groups, read_predictions
    from survival.report import write_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    predictions = read_predictions(args.predictions)
    reference = read_predictions(args.reference)
    ev = evaluate(predictions, reference, times=_days(args.times), n_resamples=args.bootstrap,
                  seed=args.seed, calibration_times=_days(args.calibration_times),
                  calibration_groups=args.calibration_groups)
    (out / "metrics.json").write_text(json.dumps(ev.metrics, indent=2, allow_nan=False))
    predictions_with_groups(ev).to_csv(out / "predictions_with_groups.csv", index=False)

    t, e, r = (predictions.time_days.to_numpy(float), predictions.event.to_numpy(int),
               predictions.risk.to_numpy(float))
    # caption -> (file stem, figure)
    figs = {"Time-dependent ROC": ("td_roc", F.plot_td_roc(ev.td_auc)),
            "Risk score density by outcome": ("risk_density", F.plot_risk_density(r, e, ev.metrics["median_split"]["cutoff"])),
            "Kaplan-Meier by risk group (reference median split)":
                ("km_risk_groups", F.plot_km_groups(t, e, ev.tier, ev.split))}
    for ct, cal in ev.calibration.items():
        figs[f"Calibration at {ct:g} d"] = (f"calibration_{ct:g}d", F.plot_calibration(cal))
    for dt, curve in ev.dca.items():
        figs[f"Decision curve at {dt:g} d"] = (f"decision_curve_{dt:g}d", F.plot_decision_curve(curve, dt))
    pngs = {caption: F.save_figure(fig, out / stem)[0] for caption, (stem, fig) in figs.items()}
    write_report(out / "report.html", ev.metrics, pngs, args.title)
    m = ev.metrics
    r3 = lambda v: "n/a" if v is None else f"{v:.3g}"  # noqa: E731
    log.info("n = %d, C = %.3f (%.3f-%.3f), HR %s, log-rank P %s; wrote %s", m["n"],
             m["c_index"]["value"], *m["c_index"]["ci95"], r3(m["hazard_ratio"]["value"]),
             r3(m["logrank"]["p"]), out / "report.html")
    return 0
