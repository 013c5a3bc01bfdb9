"""`voxsurv predict`: risk score, tier, S(t), Grad-CAM NIfTI + PNG overlay and report.json per
patient with the inference bundle, one folder per patient under --out, with predictions.csv and
exclusions.csv kept up to date after every patient (see voxsurv.inference.outputs)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("predict", help="risk, tier, S(t), Grad-CAM and report per patient with the inference bundle",
                       description="One patient (--image + --mask, or --ct-dir + --rtstruct + --roi) or many "
                                   "(--manifest CSV: patient_id, image, mask or patient_id, ct_dir, rtstruct[, roi]"
                                   "[, time_days, event]) into OUT/<patient folder>/ (the id, or the id's ASCII part "
                                   "+ a short hash where the id is not a safe folder name) with OUT/predictions.csv "
                                   "and OUT/exclusions.csv. Bad patients go to exclusions.csv and the run goes on. "
                                   "Re-running the same command keeps finished patients (same input, weights and "
                                   "settings) and computes only the rest; --overwrite is the only way to replace "
                                   "results. `voxsurv evaluate --predictions OUT` reads OUT directly.")
    p.add_argument("--bundle", default="bundles/inference", help="inference bundle folder (default bundles/inference)")
    p.add_argument("--image", help="CT volume (NIfTI/NRRD, HU)")
    p.add_argument("--mask", help="tumour mask on the CT's grid")
    p.add_argument("--ct-dir", help="folder with the DICOM CT series")
    p.add_argument("--rtstruct", help="RTSTRUCT file")
    p.add_argument("--roi", help="ROI name pattern (case-insensitive regular expression), e.g. GTV")
    p.add_argument("--manifest", help="batch mode CSV (paths relative to it)")
    p.add_argument("--patient-id", help="patient id for the report (single mode); default: the image file "
                                        "name, or 'anonymous' for DICOM (DICOM names/UIDs are never used)")
    p.add_argument("--checkpoint", help="run other weights (e.g. the pre-trained model) through the same bundle")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per patient)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace earlier results in --out (of another model, or of a patient from other inputs)")
    p.add_argument("--workers", type=int, default=2, help="preprocessing worker processes (manifest mode; default 2)")
    p.add_argument("--device", default="cpu", help="torch device for the network")
    p.set_defaults(handler=run)


def _stem(path: str) -> str:
    from pathlib import Path

    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name.split(".")[0]


def records_from_args(args) -> tuple[list[dict], bool]:
    """The patients to predict and whether this is single-patient mode; UsageError for a command
    line that names no input or several kinds."""
    from voxsurv.core.errors import UsageError

    modes = [bool(args.manifest), bool(args.image or args.mask), bool(args.ct_dir or args.rtstruct)]
    if sum(modes) != 1:
        raise UsageError("give exactly one of --image/--mask, --ct-dir/--rtstruct/--roi or --manifest")
    if args.manifest:
        if args.patient_id:
            raise UsageError("--patient-id is for one patient; a manifest names its patients")
        from voxsurv.inference.batch import read_records

        return read_records(args.manifest), False
    if args.image or args.mask:
        if not (args.image and args.mask):
            raise UsageError("--image needs --mask (and the other way round)")
        return [{"patient_id": args.patient_id or _stem(args.image), "image": args.image, "mask": args.mask}], True
    if not (args.ct_dir and args.rtstruct and args.roi):
        raise UsageError("DICOM input needs --ct-dir, --rtstruct and --roi")
    return [{"patient_id": args.patient_id or "anonymous", "ct_dir": args.ct_dir, "rtstruct": args.rtstruct,
             "roi": args.roi}], True


def run(args) -> int:
    from voxsurv.commands import resolve_bundle
    from voxsurv.core.console import warn
    from voxsurv.inference.batch import predict_patients
    from voxsurv.inference.outputs import EXCLUSIONS_FILE, PREDICTIONS_FILE

    records, single = records_from_args(args)
    bundle = resolve_bundle(args.bundle, "inference")
    summary = predict_patients(records, args.out, bundle, checkpoint=args.checkpoint, device=args.device,
                               roi=args.roi, overwrite=args.overwrite, workers=args.workers, single=single,
                               owns_process=getattr(args, "owns_process", False))
    out = summary.out
    if single:
        pid = records[0]["patient_id"]
        report = summary.reports[pid]
        surv = ", ".join(f"{k}={'n/a' if v is None else f'{v:.3f}'}" for k, v in report["survival"].items())
        kept = " (kept from an earlier run: same input, weights and settings)" if pid in summary.kept else ""
        print(f"patient {pid}: risk {report['risk']:.4f}, tier {report['tier']}, {surv}; "
              f"{report['n_slices']} slices{kept}")
        print(f"wrote {out / report.get('folder', '')}/ (report.json, gradcam.nii.gz, overlay.png) and "
              f"{out / PREDICTIONS_FILE}")
        for w in report.get("warnings", []):
            warn(w)
        if not report.get("calibration_applies", True):
            warn(report["calibration_note"])
        return 0
    n_new, n_kept, n_excl = len(summary.computed), len(summary.kept), len(summary.excluded)
    print(f"predicted {n_new} patient(s), kept {n_kept} from earlier runs -> {out / PREDICTIONS_FILE}; "
          f"excluded {n_excl} -> {out / EXCLUSIONS_FILE}")
    for row in summary.excluded:
        warn(f"excluded: {row['message']}")
    flagged = [pid for pid, r in summary.reports.items() if r.get("warnings")]
    if flagged:
        warn(f"{len(flagged)} report(s) carry warnings (risk outside the training range, tumour wider than the "
             f"field of view): {', '.join(flagged[:5])}{', ...' if len(flagged) > 5 else ''}")
    if not (n_new + n_kept):
        from voxsurv.core.errors import InputError

        raise InputError(f"no patient could be predicted: all {n_excl} were excluded", path=str(out / EXCLUSIONS_FILE),
                         fix="correct the inputs listed in exclusions.csv and run the same command again")
    return 0
