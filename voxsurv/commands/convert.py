"""`voxsurv convert`: DICOM CT series + RTSTRUCT -> image.nii.gz (int16 HU) + mask.nii.gz (uint8)."""

from __future__ import annotations

OUTPUTS = ("image.nii.gz", "mask.nii.gz")


def register(sub) -> None:
    from voxsurv.commands import deprecated_alias

    p = sub.add_parser("convert", help="DICOM CT + RTSTRUCT (or SEG) -> NIfTI image (int16 HU) + tumour mask (uint8)",
                       description="Convert one patient (--ct-dir, --rtstruct, --roi, --out) or many "
                                   "(--manifest CSV with patient_id, ct_dir, rtstruct or seg[, roi]; bad patients "
                                   "go to OUT/exclusions.csv and the run goes on).")
    p.add_argument("--ct-dir", help="folder with the CT series (other files/series are ignored)")
    p.add_argument("--rtstruct", help="RTSTRUCT file")
    p.add_argument("--seg", help="DICOM SEG file instead of --rtstruct (segment label matched by --roi)")
    p.add_argument("--roi", help="ROI name pattern: case-insensitive regular expression, e.g. GTV")
    p.add_argument("--out", help="output folder (batch: one sub-folder per patient)")
    deprecated_alias(p, "--out-dir", "out", "--out")
    p.add_argument("--patient-id", help="patient id used in messages (single mode)")
    p.add_argument("--manifest", help="batch mode: CSV with patient_id, ct_dir, rtstruct or seg[, roi] "
                                      "(paths relative to the CSV); other columns are copied to OUT/converted.csv")
    p.add_argument("--overwrite", action="store_true", help="replace image.nii.gz/mask.nii.gz of an earlier run")
    p.set_defaults(handler=run)


def run(args) -> int:
    from voxsurv.core.errors import UsageError
    from voxsurv.core.output_paths import check_output_folder, refuse_to_replace, staged_outputs

    if not args.out:
        raise UsageError("--out is required (the output folder)")
    out = check_output_folder(args.out)
    if args.manifest:
        from voxsurv.core.console import progress_bar, warn
        from voxsurv.core.tables import read_csv_table

        table = read_csv_table(args.manifest, "conversion manifest")
        refuse_to_replace(out, ["converted.csv"], args.overwrite)
        from voxsurv.data.ingest.convert import convert_batch

        bar = progress_bar(total=len(table), desc="convert", unit="patient")
        converted, excluded = convert_batch(args.manifest, out, roi=args.roi,
                                            on_patient=lambda pid: (bar.update(1), bar.set_postfix_str(pid)))
        bar.close()
        print(f"converted {len(converted)} patient(s) -> {out / 'converted.csv'}; "
              f"excluded {len(excluded)} -> {out / 'exclusions.csv'}")
        for msg in excluded["message"]:
            warn(f"excluded: {msg}")
        if not len(converted):
            from voxsurv.core.errors import InputError

            raise InputError(f"no patient could be converted: all {len(excluded)} were excluded",
                             path=str(out / "exclusions.csv"), fix="correct the inputs listed there and run again")
        return 0
    if not (args.ct_dir and args.roi and (bool(args.rtstruct) != bool(args.seg))):
        raise UsageError("give --ct-dir, --roi and one of --rtstruct/--seg (or --manifest)")
    refuse_to_replace(out, OUTPUTS, args.overwrite)
    from voxsurv.data.ingest.convert import convert_patient

    with staged_outputs(out) as stage:
        res = convert_patient(args.ct_dir, args.rtstruct, args.roi, stage, patient_id=args.patient_id, seg=args.seg)
    print(f"ROI {res.roi_name!r}: {res.mask_voxels} voxels ({res.mask_volume_ml:.1f} ml); grid {res.size} of "
          f"{tuple(round(s, 4) for s in res.spacing_mm)} mm")
    print(f"wrote {out / OUTPUTS[0]} and {out / OUTPUTS[1]}")
    return 0
