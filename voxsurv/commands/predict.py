"""`voxsurv predict`: risk score, tier, S(t), Grad-CAM NIfTI + PNG overlay and report.json per
patient with the inference bundle; a manifest run writes predictions.csv and exclusions.csv."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("predict", help="risk, tier, S(t), Grad-CAM and report per patient with the inference bundle",
                       description="One patient (--image + --mask, or --ct-dir + --rtstruct + --roi) into OUT, or "
                                   "many (--manifest CSV: patient_id, image, mask or patient_id, ct_dir, rtstruct"
                                   "[, roi]) into OUT/<patient_id>/ with OUT/predictions.csv; bad patients go to "
                                   "OUT/exclusions.csv and the run goes on.")
    p.add_argument("--bundle", default="bundles/inference", help="inference bundle folder")
    p.add_argument("--image", help="CT volume (NIfTI/NRRD, HU)")
    p.add_argument("--mask", help="tumour mask on the CT's grid")
    p.add_argument("--ct-dir", help="folder with the DICOM CT series")
    p.add_argument("--rtstruct", help="RTSTRUCT file")
    p.add_argument("--roi", help="ROI name pattern (case-insensitive regular expression), e.g. GTV")
    p.add_argument("--manifest", help="batch mode CSV (paths relative to it)")
    p.add_argument("--patient-id", help="patient id for the report (single mode); default: the image file "
                                        "name, or 'anonymous' for DICOM (DICOM names/UIDs are never used)")
    p.add_argument("--checkpoint", help="run other weights (e.g. the pre-trained model) through the same bundle")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--workers", type=int, default=2, help="preprocessing DataLoader workers (manifest mode)")
    p.add_argument("--device", default="cpu", help="torch device for the network")
    p.set_defaults(handler=run)


def _setup_logging() -> None:
    import logging

    from voxsurv.privacy import RedactingFilter

    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(logging.INFO)
    for h in root.handlers:
        h.addFilter(RedactingFilter())


def run(args) -> int:
    import sys
    from pathlib import Path

    from voxsurv.errors import InputError
    from voxsurv.inference.predictor import RiskPredictor
    from voxsurv.privacy import redact

    _setup_logging()
    modes = [bool(args.manifest), bool(args.image or args.mask), bool(args.ct_dir or args.rtstruct)]
    if sum(modes) != 1:
        print("voxsurv predict: give exactly one of --image/--mask, --ct-dir/--rtstruct/--roi or --manifest",
              file=sys.stderr)
        return 2
    try:
        predictor = RiskPredictor(args.bundle, checkpoint=args.checkpoint, device=args.device, roi=args.roi)
        if args.manifest:
            pred, excl = predictor.predict_manifest(args.manifest, args.out, num_workers=args.workers)
            print(f"predicted {len(pred)} patient(s) -> {Path(args.out) / 'predictions.csv'}; "
                  f"excluded {len(excl)} -> {Path(args.out) / 'exclusions.csv'}")
            for msg in excl["message"]:
                print(f"  excluded: {msg}", file=sys.stderr)
            return 0 if len(pred) else 1
        if args.image or args.mask:
            if not (args.image and args.mask):
                print("voxsurv predict: --image needs --mask (and the other way round)", file=sys.stderr)
                return 2
            pid = args.patient_id or Path(args.image).name.split(".")[0]
            record = {"patient_id": pid, "image": args.image, "mask": args.mask}
        else:
            record = {"patient_id": args.patient_id or "anonymous", "ct_dir": args.ct_dir,
                      "rtstruct": args.rtstruct, "roi": args.roi}
        report = predictor.predict(record, args.out)
    except InputError as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        return 1
    surv = ", ".join(f"{k}={'n/a' if v is None else f'{v:.3f}'}" for k, v in report["survival"].items())
    print(f"patient {report['patient_id']}: risk {report['risk']:.4f}, tier {report['tier']} "
          f"(cut-offs {', '.join(f'{c:.4f}' for c in report['tier_cutoffs'])}), {surv}; "
          f"{report['n_slices']} slices, {report['timing_s']['total']:.1f} s")
    print(f"wrote {Path(args.out) / 'report.json'}, gradcam.nii.gz, overlay.png")
    if not report["calibration_applies"]:
        print("note: " + report["calibration_note"], file=sys.stderr)
    return 0
