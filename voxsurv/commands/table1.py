"""`voxsurv table1`: patient characteristics by cohort or split (CSV + HTML)."""

from __future__ import annotations

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
    p.add_argument("--overwrite", action="store_true", help="replace table1.csv/table1.html of an earlier run")
    p.set_defaults(handler=run)


OUTPUTS = ("table1.csv", "table1.html")


def run(args) -> int:
    from pathlib import Path

    from voxsurv.stats.table1 import characteristics_table, table_to_html
    from voxsurv.commands import check_output_folder, refuse_to_replace
    from voxsurv.core.errors import InputError
    from voxsurv.core.tables import read_csv_table, write_csv_atomic, write_text_atomic

    out = check_output_folder(args.out)
    refuse_to_replace(out, OUTPUTS, args.overwrite)
    manifest = Path(args.manifest)
    data = read_csv_table(manifest, "manifest")
    if args.by not in data.columns:
        raise InputError(f"grouping column {args.by!r} not in the manifest (columns: {list(data.columns)})",
                         path=manifest, fix="pass --by with one of the manifest's columns, e.g. cohort or split")
    if args.variables:
        variables = [v.strip() for v in args.variables.split(",") if v.strip()]
        missing = [v for v in variables if v not in data.columns]
        if missing:
            raise InputError(f"columns {missing} not in the manifest", path=manifest,
                             fix=f"choose --variables among {list(data.columns)}")
    else:
        variables = [c for c in data.columns if c not in (*NON_CHARACTERISTICS, args.by)]
    categorical = [c.strip() for c in args.categorical.split(",") if c.strip()]
    table = characteristics_table(data, args.by, variables, categorical)
    html = table_to_html(table, f"Patient characteristics by {args.by}")
    write_csv_atomic(table, out / "table1.csv")
    write_text_atomic(html, out / "table1.html")
    print(f"table 1 of {len(data)} patients by {args.by} ({len(table)} rows) -> {out / 'table1.csv'}, "
          f"{out / 'table1.html'}")
    return 0
