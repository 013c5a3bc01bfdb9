"""Self-contained HTML report of an evaluation: key numbers, methods as a reviewer needs them,
and the figures embedded as base64 PNG (no external files, scripts or fonts)."""

from __future__ import annotations

import base64
import html
from pathlib import Path


def _f(v, digits=3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _p(v) -> str:
    return "n/a" if v is None else ("&lt; 0.001" if v < 0.001 else f"{v:.3f}")


def _ci(ci, digits=3) -> str:
    if not ci or any(c is None for c in ci):
        return "n/a" if not ci else f"{_f(ci[0], digits)}-{_f(ci[1], digits)}"
    return f"{ci[0]:.{digits}f}-{ci[1]:.{digits}f}"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def methods_text(metrics: dict) -> str:
    c = metrics["c_index"]
    return (
        "<ul>"
        f"<li><b>Discrimination:</b> Harrell's concordance index (higher risk = shorter survival; a "
        "pair is comparable when the shorter time is a death; tied risks count 1/2; equals R "
        "<code>survival::concordance(..., reverse=TRUE)</code>). 95% CI: percentile bootstrap over "
        f"patients, {c['n_resamples']} resamples (seed {c['seed']}).</li>"
        "<li><b>Time-dependent AUC:</b> cumulative/dynamic AUC (cases: death at T &le; t; controls: "
        "T &gt; t), cases weighted by the inverse probability of censoring from the Kaplan-Meier "
        "censoring distribution of the reference (training) data (scikit-survival "
        "<code>cumulative_dynamic_auc</code>; equals riskRegression::Score to ~1e-4). Times beyond "
        "follow-up are reported as not estimable.</li>"
        "<li><b>Risk groups:</b> high risk = risk above the median risk of the reference (training) "
        f"data (cut-off {_f(metrics['median_split']['cutoff'], 4)}); log-rank test; hazard ratio "
        "(high vs low) from a Cox model on the group indicator, Efron ties, Wald 95% CI; Kaplan-Meier "
        "medians with R's log-transformed Greenwood CI.</li>"
        "<li><b>Calibration:</b> S(t|x) = exp(-H0(t) exp(risk)) with Breslow's baseline H0 fitted "
        "on the reference data (step function at the last event time &le; t); patients grouped by "
        "quantiles of predicted S(t|x) (R <code>cut(S, quantile(S, seq(0,1,1/g)), "
        "include.lowest=TRUE)</code>); observed = Kaplan-Meier S(t) per group with 95% CI; MAE = "
        "mean |predicted - observed| over groups.</li>"
        "<li><b>Decision curves:</b> treat when 1 - S(t|x) &ge; threshold; net benefit from "
        "Kaplan-Meier estimates as R dcurves for time-to-event outcomes; treat-all and treat-none "
        "for reference.</li></ul>")


def render_report(metrics: dict, figures: dict[str, Path], title: str = "voxsurv evaluation") -> str:
    """HTML text. `figures`: caption -> PNG path (embedded)."""
    c, split = metrics["c_index"], metrics["median_split"]
    hr, lr = metrics["hazard_ratio"], metrics["logrank"]
    rows = [("Patients (deaths)", f"{metrics['n']} ({metrics['events']})"),
            ("Reference patients (deaths)",
             f"{metrics['reference']['n']} ({metrics['reference']['events']})"),
            ("Harrell's C (95% CI)", f"{_f(c['value'])} ({_ci(c['ci95'])})")]
    for t, detail in metrics["td_auc_detail"].items():
        value = _f(detail["auc"]) if detail["auc"] is not None else f"not estimable: {detail['reason']}"
        rows.append((f"AUC at {t} d (cases / controls)",
                     f"{value} ({detail['n_cases']} / {detail['n_controls']})"))
    if split.get("reason"):
        rows.append(("Risk groups (reference median split)", "not estimable: " + html.escape(split["reason"])))
    else:
        rows += [("Hazard ratio high vs low (95% CI)", f"{_f(hr['value'], 2)} ({_ci(hr['ci95'], 2)})"),
                 ("Log-rank chi-square, P", f"{_f(lr['chi2'], 2)}, {_p(lr['p'])}")]
    rows.append(("Split cut-off (reference median)",
                 f"{_f(split['cutoff'], 4)} (high n = {split['n_high']}, low n = {split['n_low']})"))
    for name in ("low", "high") if "median_os_days" in split else ():
        m = split["median_os_days"][name]
        med = "not reached" if m["median"] is None else f"{m['median']:g}"
        ci = "-".join("NR" if v is None else f"{v:g}" for v in m["ci95"])
        rows.append((f"Median OS, {name} risk (95% CI), days", f"{med} ({ci})"))
    for t, cal in metrics["calibration"].items():
        rows.append((f"Calibration MAE at {t} d ({cal['n_groups']} groups)", _f(cal["mae"], 4)))
    for t, reason in metrics.get("calibration_skipped", {}).items():
        rows.append((f"Calibration at {t} d", "not estimable: " + html.escape(reason)))
    for t, reason in metrics.get("dca_skipped", {}).items():
        rows.append((f"Decision curve at {t} d", "not estimable: " + html.escape(reason)))
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in metrics.get("warnings", []))
    warnings = (f"<h2>Warnings</h2><ul class='warnings'>{warnings}</ul>" if warnings else "")
    figs = "".join(_img(p, caption) for caption, p in figures.items())
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>"
            "body{font-family:Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;margin:1em 0}th,td{padding:4px 12px;border-bottom:1px solid #ddd;"
            "text-align:left}th{font-weight:normal;color:#555}figure{display:inline-block;margin:10px;"
            "vertical-align:top}img{max-width:520px;height:auto}figcaption{font-size:0.85em;color:#555}"
            ".warnings{color:#8a4b00}"
            "</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{warnings}<h2>Results</h2><table>{table}</table>"
            f"<h2>Figures</h2>{figs}<h2>Methods</h2>{methods_text(metrics)}"
            "<p style='font-size:0.8em;color:#777'>All numbers are in metrics.json beside this file.</p>"
            "</body></html>\n")


def write_report(path, metrics: dict, figures: dict[str, Path], title: str = "voxsurv evaluation") -> Path:
    path = Path(path)
    path.write_text(render_report(metrics, figures, title), encoding="utf-8")
    return path
