"""results.md of the study: the a-g table from results.json (numbers copied, never recomputed)."""

from __future__ import annotations

import platform


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


def results_table(res: dict) -> str:
    lines = ["| row | model | trained on | C-index (95% CI) | n test (events) | td-AUC 1/2/3 y | HR high vs low (95% CI) | log-rank P | wall s | device |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in res["rows"].items():
        ci = r["ci95"]
        auc = "/".join(_f(r["td_auc"].get(k), "{:.2f}") for k in ("1y", "2y", "3y"))
        hr = f"{_f(r['hr'], '{:.2f}')} ({_f(r['hr_ci95'][0], '{:.2f}')}-{_f(r['hr_ci95'][1], '{:.2f}')})"
        lines.append(f"| {key} | {r['description']} | {' + '.join(r['trained_on'])} | {_f(r['c_index'])} "
                     f"({_f(ci[0])}-{_f(ci[1])}) | {r['n_test']} ({r['events_test']}) | {auc} | {hr} | "
                     f"{_f(r['logrank_p'], '{:.3g}')} | {r['wall_s']:.0f} | {r['device']} |")
    return "\n".join(lines)


def results_markdown(res: dict) -> str:
    head = (f"# Real cross-cohort study results ({res['status']}{', SMOKE' if res['smoke'] else ''})\n\n"
            f"Date {res['date']}; seed {res['settings']['seed']}; split patients {res['split_patients']} "
            f"(events {res['split_events']}); test set fingerprint {res['test_patients_sha']}.\n\n")
    sel = res.get("selected_maps")
    maps = "" if not sel else f"\nMaps used ({len(sel['selected'])}): {', '.join(sel['selected'])}. Rule: {sel['rule']}.\n"
    return head + results_table(res) + "\n" + maps + f"\nStep wall times (s): {res['step_wall_s']}\n"


TABLE_START, TABLE_END = "<!-- results-table:start -->", "<!-- results-table:end -->"


def publish(results_json: str, doc_json: str, doc_md: str) -> None:
    """Copy the run's results.json to `doc_json` and refresh the generated table in `doc_md`
    (between the TABLE_START/TABLE_END markers), so the docs' numbers equal the file."""
    import json
    from pathlib import Path

    res = json.loads(Path(results_json).read_text())
    Path(doc_json).write_text(json.dumps(res, indent=1))
    md = Path(doc_md).read_text()
    head, rest = md.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    status = "" if res["status"] == "complete" else \
        "\n**PARTIAL RUN: only the rows below had finished when this table was written.**\n"
    Path(doc_md).write_text(f"{head}{TABLE_START}\n{status}\n{results_table(res)}\n\n{TABLE_END}{tail}")


if __name__ == "__main__":  # python -m voxsurv.study.report RESULTS_JSON DOC_JSON DOC_MD
    import sys

    publish(*sys.argv[1:4])
