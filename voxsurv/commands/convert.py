"""`voxsurv convert`: DICOM CT series + RTSTRUCT -> image.nii.gz (int16 HU) + mask.nii.gz (uint8)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("convert", help="DICOM CT + RTSTRUCT (or SEG) -> NIfTI image (int16 HU) + tumour mask (uint8)",
                       description="Convert one patient (--ct-dir, --rtstruct, --roi, --out-dir) or many "
                                   "(--manifest CSV with patient_id, ct_dir, rtstruct or seg[, roi]; bad patients "
                                   "go to OUT/exclusions.csv and the run goes on).")
    p.add_argument("--ct-dir", help="folder with the CT series (other files/series are ignored)")
    p.add_argument("--rtstruct", help="RTSTRUCT file")
    p.add_argument("--seg", help="DICOM SEG file instead of --rtstruct (segment label matched by --roi)")
    p.add_argument("--roi", help="ROI name pattern: case-insensitive regular expression, e.g. GTV")
    p.add_argument("--out-dir", required=True, help="output folder (batch: one sub-folder per patient)")
    p.add_argument("--patient-id", help="patient id used in messages (single mode)")
    p.add_argument("--manifest", help="batch mode: CSV with patient_id, ct_dir, rtstruct or seg[, roi] "
                                      "(paths relative to the CSV); other columns are copied to OUT/converted.csv")
    p.set_defaults(handler=run)


def run(args) -> int:
    import sys

    from voxsurv.errors import InputError
    from voxsurv.ingest.convert import convert_batch, convert_patient

    try:
        if args.manifest:
            converted, excluded = convert_batch(args.manifest, args.out_dir, roi=args.roi)
            print(f"converted {len(converted)} patient(s) -> {args.out_dir}/converted.csv; "
                  f"excluded {len(excluded)} -> {args.out_dir}/exclusions.csv")
            for msg in excluded["message"]:
                print(f"  excluded: {msg}", file=sys.stderr)
            return 0 if len(converted) else 1
        if not (args.ct_dir and args.roi and (bool(args.rtstruct) != bool(args.seg))):
            print("voxsurv convert: give --ct-dir, --roi and one of --rtstruct/--seg (or --manifest)", file=sys.stderr)
            return 2
        res = convert_patient(args.ct_dir, args.rtstruct, args.roi, args.out_dir, patient_id=args.patient_id,
                              seg=args.seg)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"ROI {res.roi_name!r}: {res.mask_voxels} voxels ({res.mask_volume_ml:.1f} ml); grid {res.size} of "
          f"{tuple(round(s, 4) for s in res.spacing_mm)} mm")
    print(f"wrote {res.image_path} and {res.mask_path}")
    return 0
