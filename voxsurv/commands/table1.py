"""`voxsurv table1`: patient characteristics by cohort or split (CSV + HTML)."""

from __future__ import annotations

import logging

from voxsurv.commands import reports_bad_input

log = logging.getLogger(__name__)

#: columns of a voxsurv manifest that describe files, not patients
NON_CHARACTERISTICS = ("patient_id", "image", "mask")


def register(sub) -> None:
    p = sub.add_parser("table1", help="patient-characteristics table by cohort/split (CSV + HTML)",
                       description="Medians (IQR) and counts (%) per group with Mann-Whitney / "
                                   "Kruskal-Wallis and chi-square / Fisher exact tests.")
    p.add_argument("--manifest", required=True, help="CSV with one row per patient")
    p.add_argument("--by", default="cohort", help="grouping column (default: cohort)")
    p.add_argument("--out", required=True, help="output folder (table1.csv, table1.html)")
    p.add_argument("--variables", default=None,
                   help="comma-separated columns to describe (default: all but id/image/mask)")
    p.add_argument("--categorical", default="",
                   help="comma-separated numeric columns to treat as categorical")
    p.set_defaults(handler=run)


@reports_bad_input
def run(args) -> int:
    from pathlib import Path

    import pandas as pd

    from survival.table1 import characteristics_table, table_to_html
    from voxsurv.errors import InputError

    manifest = Path(args.manifest)
    if not manifest.is_file():
        raise InputError("manifest not found", path=manifest, fix="pass --manifest PATH to a CSV")
    data = pd.read_csv(manifest)
    if args.variables:
        variables = [v.strip() for v in args.variables.split(",") if v.strip()]
        missing = [v for v in variables if v not in data.columns]
        if missing:
            raise InputError(f"columns {missing} not in the manifest", path=manifest)
    else:
        variables = [c for c in data.columns if c not in (*NON_CHARACTERISTICS, args.by)]
    categorical = [c.strip() for c in args.categorical.split(",") if c.strip()]
    table = characteristics_table(data, args.by, variables, categorical)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "table1.csv", index=False)
    (out / "table1.html").write_text(table_to_html(table, f"Patient characteristics by {args.by}"))
    log.info("wrote %s and %s (%d patients, %d rows)", out / "table1.csv", out / "table1.html",
             len(data), len(table))
    return 0
