"""Publication figures for the evaluation (matplotlib, no pyplot state: each function returns a
`matplotlib.figure.Figure`; `save_figure` writes PNG + SVG). Each figure carries its own axis
labels with units, a legend and the key numbers, so it reads without the text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from voxsurv.stats.kaplan_meier import kaplan_meier

COLOURS = {"low": "#1f77b4", "high": "#d62728", "model": "#2ca02c", "all": "#7f7f7f",
           "none": "#000000", "died": "#d62728", "alive": "#1f77b4"}
TIME_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]


def _style(ax):
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(alpha=0.25, linewidth=0.6)
    ax.tick_params(labelsize=9)


def _fmt_p(p: float) -> str:
    return "P < 0.001" if p < 0.001 else f"P = {p:.3f}"


def _days_label(t: float) -> str:
    years = t / 365.25
    return f"{t:g} d ({years:.1f} y)"


def save_figure(fig: Figure, stem) -> list[Path]:
    """Write `stem`.png (200 dpi) and `stem`.svg; return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=200, bbox_inches="tight", facecolor="white")
    fig.savefig(paths[1], bbox_inches="tight", facecolor="white")
    return paths


def plot_td_roc(aucs) -> Figure:
    """Time-dependent (cumulative/dynamic) ROC curves, one per time point, AUCs in the legend.
    `aucs`: `voxsurv.stats.metrics.TimeDependentAUC` results computed with `with_curve=True`."""
    fig = Figure(figsize=(5.2, 5.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="chance (AUC 0.50)")
    for i, r in enumerate(aucs):
        colour = TIME_COLOURS[i % len(TIME_COLOURS)]
        if r.fpr is None or not np.isfinite(r.auc):
            ax.plot([], [], color=colour, label=f"{_days_label(r.time)}: not estimable")
            continue
        ax.plot(r.fpr, r.tpr, color=colour, lw=1.8, drawstyle="default",
                label=f"{_days_label(r.time)}: AUC {r.auc:.3f} ({r.n_cases} cases / {r.n_controls} controls)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity (false-positive fraction)")
    ax.set_ylabel("Sensitivity (IPCW true-positive fraction)")
    ax.set_title("Time-dependent ROC (cumulative/dynamic)", fontsize=11)
    ax.legend(loc="lower right", fontsize=7.5, frameon=False)
    _style(ax)
    return fig


def plot_risk_density(risk, event, cutoff: float | None = None) -> Figure:
    """Kernel density of the risk score for patients who died vs were alive at last follow-up
    (Gaussian KDE, Scott's bandwidth), with a rug and the split cut-off."""
    from scipy.stats import gaussian_kde

    risk = np.asarray(risk, dtype=float)
    event = np.asarray(event).astype(bool)
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    span = risk.max() - risk.min() or 1.0
    grid = np.linspace(risk.min() - 0.3 * span, risk.max() + 0.3 * span, 400)
    ymax = 0.0
    rugs = []
    for mask, name, key in ((event, "died", "died"), (~event, "alive at last follow-up", "alive")):
        values = risk[mask]
        label = f"{name} (n = {mask.sum()})"
        if values.size >= 2 and np.ptp(values) > 0:
            density = gaussian_kde(values)(grid)
            ymax = max(ymax, density.max())
            ax.fill_between(grid, density, alpha=0.25, color=COLOURS[key])
            ax.plot(grid, density, color=COLOURS[key], lw=1.8, label=label)
        else:
            ax.plot([], [], color=COLOURS[key], label=label + " (too few for a density)")
        rugs.append((values, key))
    ymax = ymax or 1.0
    for row, (values, key) in enumerate(rugs):  # rug of individual patients below the curves
        ax.plot(values, np.full(values.size, -(0.04 + 0.05 * row) * ymax), "|", color=COLOURS[key], ms=6)
    ax.set_ylim(-0.12 * ymax, 1.08 * ymax)
    if cutoff is not None:
        ax.axvline(cutoff, color="black", ls=":", lw=1.2, label=f"median split (reference) {cutoff:.3g}")
    ax.set_xlabel("Predicted risk score (higher = shorter survival)")
    ax.set_ylabel("Density")
    ax.set_title("Risk score by outcome", fontsize=11)
    ax.legend(fontsize=8, frameon=False)
    _style(ax)
    return fig


def plot_km_groups(time, event, high_risk, split=None, at_risk_times=None, xmax=None) -> Figure:
    """Kaplan-Meier curves of the low- and high-risk groups with 95% CI bands (R's log band),
    censoring ticks, a numbers-at-risk table, and HR / log-rank P / medians from `split`
    (a `voxsurv.stats.risk_groups.MedianSplitResult`)."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    high_risk = np.asarray(high_risk).astype(int)
    xmax = float(xmax if xmax is not None else time.max())
    if at_risk_times is None:
        step = 365.0 if xmax > 3 * 365 else (180.0 if xmax > 540 else max(xmax / 5.0, 1.0))
        at_risk_times = np.arange(0.0, xmax + 1e-9, step)
    fig = Figure(figsize=(6.4, 5.6))
    gs = fig.add_gridspec(2, 1, height_ratios=[4.2, 1.0], hspace=0.32)
    ax = fig.add_subplot(gs[0])
    tab = fig.add_subplot(gs[1], sharex=ax)
    groups = [(0, "Low risk", "low"), (1, "High risk", "high")]
    for row, (g, name, key) in enumerate(groups):
        m = high_risk == g
        if not m.any():
            continue
        km = kaplan_meier(time[m], event[m])
        x = np.r_[0.0, km.time]
        ax.step(x, np.r_[1.0, km.survival], where="post", color=COLOURS[key], lw=1.8,
                label=f"{name} (n = {m.sum()}, {int(event[m].sum())} deaths)")
        ax.fill_between(x, np.r_[1.0, km.lower], np.r_[1.0, km.upper], step="post",
                        color=COLOURS[key], alpha=0.15, linewidth=0)
        cens = km.n_censor > 0
        ax.plot(km.time[cens], km.survival[cens], "|", color=COLOURS[key], ms=7)
        counts = km.n_at_risk(at_risk_times)
        for t, n in zip(at_risk_times, counts):
            tab.text(t, 1 - row, str(int(n)), ha="center", va="center", fontsize=8.5, color=COLOURS[key])
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, xmax * 1.02)
    ax.set_ylabel("Overall survival probability")
    ax.set_title("Overall survival by predicted risk group", fontsize=11)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    if split is not None:
        hr = split.hazard_ratio
        text = (f"HR (high vs low) {hr.value:.2f} (95% CI {hr.ci95[0]:.2f}-{hr.ci95[1]:.2f})\n"
                f"log-rank {_fmt_p(split.logrank.p_value)}\n"
                f"median OS: low {split.median_low.summary().replace('median ', '')}\n"
                f"           high {split.median_high.summary().replace('median ', '')}")
        ax.text(0.98, 0.84, text, transform=ax.transAxes, fontsize=7.5, va="top", ha="right",
                family="monospace", multialignment="left",
                bbox=dict(facecolor="white", edgecolor="#cccccc", alpha=0.9))
    _style(ax)
    tab.set_ylim(-0.6, 1.6)
    tab.set_yticks([1, 0], ["Low", "High"])
    for label, (_, _, key) in zip(tab.get_yticklabels(), groups):
        label.set_color(COLOURS[key])
    tab.set_xlabel("Time since baseline (days)")
    tab.set_title("Number at risk", fontsize=8.5, loc="left")
    tab.spines[["top", "right", "left"]].set_visible(False)
    tab.tick_params(left=False, labelsize=9)
    tab.tick_params(axis="y", pad=16)
    tab.set_xticks(at_risk_times)
    return fig


def plot_calibration(result) -> Figure:
    """Predicted vs observed (KM, 95% CI) survival at t per quantile group, identity line, MAE.
    `result`: `voxsurv.stats.calibration.CalibrationResult`."""
    g = result.groups
    fig = Figure(figsize=(5.0, 5.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect calibration")
    yerr = np.vstack([g.observed - g.observed_lower, g.observed_upper - g.observed]).clip(min=0)
    ax.errorbar(g.predicted, g.observed, yerr=np.nan_to_num(yerr), fmt="o", color="#1f77b4",
                ecolor="#1f77b4", elinewidth=1, capsize=3, ms=5,
                label=f"{len(g)} groups of {g.n.min()}-{g.n.max()} patients by predicted\n"
                      "survival (observed: KM, 95% CI)")
    ax.plot(g.predicted, g.observed, color="#1f77b4", lw=0.8, alpha=0.6)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel(f"Predicted survival at {_days_label(result.time)}")
    ax.set_ylabel(f"Observed survival at {_days_label(result.time)} (Kaplan-Meier)")
    ax.set_title(f"Calibration at {result.time:g} d: MAE {result.mae:.3f}", fontsize=11)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    _style(ax)
    return fig


def plot_decision_curve(curve, t: float) -> Figure:
    """Net benefit of the model (treat if 1 - S(t|x) >= threshold), treat-all and treat-none.
    `curve`: DataFrame from `voxsurv.stats.decision_curve.decision_curve`."""
    fig = Figure(figsize=(6.0, 4.2))
    ax = fig.add_subplot()
    x = curve.threshold.to_numpy()
    ax.plot(x, curve.model, color=COLOURS["model"], lw=1.8, label="model: treat if risk >= threshold")
    ax.plot(x, curve.treat_all, color=COLOURS["all"], lw=1.2, label="treat all")
    ax.plot(x, curve.treat_none, color=COLOURS["none"], lw=1.0, ls="--", label="treat none")
    top = np.nanmax(np.r_[curve.model.to_numpy(), curve.treat_all.to_numpy(), 0.0])
    ax.set_ylim(-0.05 * max(top, 0.1) - 0.02, top * 1.1 + 0.02)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"Threshold probability of death by {_days_label(t)}")
    ax.set_ylabel("Net benefit")
    ax.set_title(f"Decision curve at {t:g} d", fontsize=11)
    ax.legend(fontsize=8, frameon=False)
    _style(ax)
    return fig
