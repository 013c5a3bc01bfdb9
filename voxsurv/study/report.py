"""results.json and results.md of the study: every row, per-row bundle configs, the paired
comparisons and the selection table (numbers copied from the JSON, never recomputed).

`python -m voxsurv.study.report RESULTS_JSON DOC_JSON DOC_MD` copies a run's results.json to the
docs and refreshes the generated tables in the doc between the markers, so the docs equal the file.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

RESULTS_FORMAT = "voxsurv-study-results/2"
ROW_ORDER = ("a", "a_finetune_only", "b", "g", "volume_hu", "untrained", "c", "d", "e", "e_head_only", "f",
             "anchored")
TABLE_START, TABLE_END = "<!-- results-table:start -->", "<!-- results-table:end -->"


def versions() -> dict:
    import importlib

    out = {"python": platform.python_version()}
    for name in ("torch", "monai", "numpy", "pandas", "sksurv", "lifelines", "radiomics", "SimpleITK", "voxsurv"):
        try:
            out[name] = str(getattr(importlib.import_module(name), "__version__", "?"))
        except Exception:  # noqa: BLE001 - a missing optional package is reported, not fatal
            out[name] = "not installed"
    return out


def _f(v, fmt="{:.3f}"):
    return "n/a" if v is None else fmt.format(v)


def _oof(r: dict) -> str:
    o = r.get("source_oof_c")
    if isinstance(o, dict):
        sd = "" if o.get("sd") is None or o["sd"] != o["sd"] else f" ± {o['sd']:.3f}"
        return f"{o['mean']:.3f}{sd} (n={o['n_seeds']}, ep {o['epoch']})"
    return _f(o) if isinstance(o, float) else ""


def _rho(r: dict) -> str:
    rho = _f(r.get("spearman_test_risk_volume"), "{:.2f}")
    if "spearman_test_image_risk_volume" in r:
        rho += f" (image risk {r['spearman_test_image_risk_volume']:.2f})"
    return rho


def results_table(res: dict) -> str:
    lines = ["| row | model | trained on | source OOF C (mean ± sd over seeds) | test C (95% CI) | n test (events) "
             "| Spearman risk vs volume | td-AUC 1/2/3 y | HR high vs low (95% CI) | log-rank P | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in res["rows"].items():
        ci = r["ci95"]
        auc = "/".join(_f(r["td_auc"].get(k), "{:.2f}") for k in ("1y", "2y", "3y"))
        hr = f"{_f(r['hr'], '{:.2f}')} ({_f(r['hr_ci95'][0], '{:.2f}')}-{_f(r['hr_ci95'][1], '{:.2f}')})"
        lines.append(f"| {key} | {r['description']} | {' + '.join(r['trained_on'])} | {_oof(r)} | {_f(r['c_index'])} "
                     f"({_f(ci[0])}-{_f(ci[1])}) | {r['n_test']} ({r['events_test']}) | {_rho(r)} | {auc} | {hr} | "
                     f"{_f(r['logrank_p'], '{:.3g}')} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def comparisons_table(res: dict) -> str:
    comps = res.get("comparisons") or []
    if not comps:
        return ""
    lines = ["| split | comparison | C a | C b | ΔC (95% CI) | CI excludes 0 | n (events) |", "|---|---|---|---|---|---|---|"]
    for c in comps:
        lines.append(f"| {c['split']} | {c['a']} − {c['b']} | {c['c_a']:.3f} | {c['c_b']:.3f} | {c['delta']:+.3f} "
                     f"({c['ci95'][0]:+.3f} to {c['ci95'][1]:+.3f}) | {'yes' if c['excludes_zero'] else 'no'} | "
                     f"{c['n']} ({c['events']}) |")
    return "\n".join(lines)


def selection_table(res: dict) -> str:
    """Candidate (and variant) -> pooled OOF C mean ± sd per evaluated epoch; chosen epoch in bold."""
    sel = res.get("selection") or {}
    protocols = res.get("protocols") or {}
    if not protocols:
        return ""
    epochs = sorted({t["epoch"] for p in protocols.values() for t in p["table"]})
    head = "| variant | " + " | ".join(f"epoch {e}" for e in epochs) + " | chosen epoch |"
    lines = [head, "|---|" + "---|" * (len(epochs) + 1)]
    for name, p in protocols.items():
        cells = {t["epoch"]: t for t in p["table"]}
        row = []
        for e in epochs:
            t = cells.get(e)
            if t is None:
                row.append("")
                continue
            sd = "" if t["sd"] is None or t["sd"] != t["sd"] else f" ± {t['sd']:.3f}"
            txt = f"{t['mean']:.3f}{sd}"
            row.append(f"**{txt}**" if e == p["chosen_epoch"] else txt)
        mark = " (chosen)" if name == sel.get("chosen") else ""
        lines.append(f"| {name}{mark} | " + " | ".join(row) + f" | {p['chosen_epoch']} |")
    return "\n".join(lines)


def results_markdown(res: dict) -> str:
    head = (f"# Real cross-cohort study results ({res['status']}{', SMOKE' if res['smoke'] else ''})\n\n"
            f"Date {res['date']}; seed {res['settings']['seed']}; split patients {res['split_patients']} "
            f"(events {res['split_events']}); test set fingerprint {res['test_patients_sha']}.\n\n")
    parts = [head, "## Rows (target test split, each scored once)\n\n", results_table(res), "\n"]
    comp = comparisons_table(res)
    if comp:
        parts += ["\n## Paired bootstrap ΔC\n\n", comp, "\n"]
    sel = selection_table(res)
    if sel:
        parts += ["\n## Selection on the source: pooled out-of-fold C (mean ± sd over seeds)\n\n", sel, "\n",
                  f"\nRule: {(res.get('selection') or {}).get('rule', '')}\n"]
    scr = res.get("screening")
    if scr:
        parts.append(f"\nMaps used ({len(scr['selected'])}): {', '.join(scr['selected'])}. Rule: {scr['rule']}.\n")
    parts.append(f"\nStep wall times (s): {res['step_wall_s']}\n")
    return "".join(parts)


def write_results(out_dir: str | Path, res: dict) -> dict:
    """results.json (atomic) and results.md in `out_dir`."""
    out = Path(out_dir)
    res = {"format": RESULTS_FORMAT, **res}
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(res, indent=1, default=float))
    os.replace(tmp, out / "results.json")
    (out / "results.md").write_text(results_markdown(res))
    return res


def ordered_rows(rows: dict) -> dict:
    return {k: rows[k] for k in ROW_ORDER if k in rows} | {k: v for k, v in rows.items() if k not in ROW_ORDER}


SCREENING_FILES = ("screening.csv", "map_correlation.csv", "selection_decisions.csv", "screening_auc.png")


def copy_artefacts(run_dir: str | Path, docs_dir: str | Path, res: dict) -> None:
    """The run's per-row predictions (``real_study_predictions/``: exactly this run's files, stale
    ones removed), its screening tables and ``selected_maps.json``, so every number in the docs can
    be recomputed from files in the repository."""
    import shutil

    run_dir, docs_dir = Path(run_dir), Path(docs_dir)
    pred = docs_dir / "real_study_predictions"
    pred.mkdir(parents=True, exist_ok=True)
    fresh = {p.name for p in (run_dir / "predictions").glob("*.csv")}
    for old in pred.glob("*.csv"):
        if old.name not in fresh:
            old.unlink()
    for name in sorted(fresh):
        shutil.copyfile(run_dir / "predictions" / name, pred / name)
    for name in SCREENING_FILES:
        if (run_dir / "screening" / name).is_file():
            shutil.copyfile(run_dir / "screening" / name, docs_dir / name)
    sc = res["screening"]
    selected = {"selected": list(sc["selected"]), "rule": sc["rule"], "auc": sc["auc"],
                "selected_median_abs_r": sc["selected_median_abs_r"], "source": "real_study.json#screening"}
    (docs_dir / "selected_maps.json").write_text(json.dumps(selected, indent=1) + "\n")


def publish(results_json: str, doc_json: str, doc_md: str) -> None:
    """Copy the run's results.json to `doc_json` (with the run's predictions and screening files
    beside it) and refresh the generated tables in `doc_md` (between the TABLE_START/TABLE_END
    markers), so the docs' numbers equal the file."""
    res = json.loads(Path(results_json).read_text())
    Path(doc_json).write_text(json.dumps(res, indent=1))
    if "screening" in res:
        copy_artefacts(Path(results_json).parent, Path(doc_json).parent, res)
    md = Path(doc_md).read_text()
    head, rest = md.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    status = "" if res["status"] == "complete" else \
        "\n**PARTIAL RUN: only the rows below had finished when this table was written.**\n"
    body = [results_table(res)]
    for title, table in (("Paired bootstrap ΔC", comparisons_table(res)),
                         ("Selection on the source (pooled out-of-fold C, mean ± sd over seeds)", selection_table(res))):
        if table:
            body.append(f"**{title}**\n\n{table}")
    Path(doc_md).write_text(f"{head}{TABLE_START}\n{status}\n" + "\n\n".join(body) + f"\n\n{TABLE_END}{tail}")


if __name__ == "__main__":  # python -m voxsurv.study.report RESULTS_JSON DOC_JSON DOC_MD
    import sys

    publish(*sys.argv[1:4])
