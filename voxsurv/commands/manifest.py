"""`voxsurv manifest check FILE`: validate a cohort manifest and print its summary."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("manifest", help="check a cohort manifest (CSV) and summarise it")
    msub = p.add_subparsers(dest="manifest_command", metavar="ACTION", required=True)
    from voxsurv.commands import output_options

    c = msub.add_parser("check", help="validate FILE; print patients per cohort, events and median "
                                      "follow-up, or every problem found (exit 1)", parents=[output_options()])
    c.add_argument("file", help="manifest CSV: patient_id, image, mask, time_days, event [, cohort, split, ...]")
    c.add_argument("--no-files", action="store_true", help="do not check that image/mask files exist")
    c.add_argument("--volumes", action="store_true",
                   help="also open every image/mask: readable, same grid, mask not empty (slower)")
    c.set_defaults(handler=run)


def run(args) -> int:
    import sys

    from voxsurv.core.errors import InputError, error_line
    from voxsurv.data.manifest import ManifestError, load_manifest, manifest_summary

    try:
        df = load_manifest(args.file, check_files=not args.no_files)
    except ManifestError as err:
        print(f"problems in {args.file}:")
        for issue in err.issues:
            print(f"  - {issue}")
        n = len(err.issues)
        print(error_line(f"manifest has {n} problem{'s' if n != 1 else ''} (listed above)", path=args.file,
                         fix=err.fix), file=sys.stderr)
        return 1

    summary = manifest_summary(df)
    print(f"OK {args.file}: {len(df)} patients, {int(df['event'].sum())} events")
    print("median follow-up: reverse Kaplan-Meier (censoring as event); "
          "median observed time: plain median of time_days over all patients")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.0f}"))
    if "split" in df.columns:
        print("split counts:", df["split"].fillna("").value_counts().sort_index().to_dict())

    if args.volumes:
        from voxsurv.core.console import progress_bar
        from voxsurv.data.ingest.volumes import check_record

        bad = []
        for rec in progress_bar(df.to_dict("records"), total=len(df), desc="volumes", unit="patient"):
            try:
                check_record(rec)
            except InputError as err:
                bad.append(str(err))
        if bad:
            print(f"{len(bad)} patient(s) with unusable volumes:")
            for line in bad:
                print(f"  - {line}")
            print(error_line(f"{len(bad)} of {len(df)} patients have unusable volumes (listed above)",
                             path=args.file, fix="re-export those files or drop the patients"), file=sys.stderr)
            return 1
        print(f"volumes: all {len(df)} image/mask pairs readable, on the same grid, masks not empty")
    return 0
