"""`voxsurv preprocess`: one patient's CT + tumour mask (NIfTI/NRRD, e.g. from `voxsurv convert`)
-> the paper's preprocessed tumour slices, saved for inspection: resample to 1 x 1 x 5 mm, HU
window 250/30 + z-score in the tumour, one 96 x 96 mm crop per axial tumour slice."""

from __future__ import annotations


def register(sub) -> None:
    from voxsurv.commands import deprecated_alias

    p = sub.add_parser("preprocess", help="CT + mask -> preprocessed tumour slices (npz + csv [+ png])",
                       description="Runs the paper's preprocessing on one patient (--image/--mask) or on every "
                                   "patient of a manifest (--manifest; bad patients go to OUT/exclusions.csv).")
    p.add_argument("--image", help="CT volume (NIfTI/NRRD, HU)")
    p.add_argument("--mask", help="tumour mask on the CT grid")
    p.add_argument("--patient-id", help="patient id kept with every slice (default: image file name)")
    p.add_argument("--manifest", help="voxsurv manifest CSV instead of --image/--mask")
    p.add_argument("--out", help="output folder (one sub-folder per patient with --manifest)")
    deprecated_alias(p, "--out-dir", "out", "--out")
    p.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 5.0), metavar=("X", "Y", "Z"),
                   help="output voxel size in mm (default 1 1 5)")
    deprecated_alias(p, "--pixdim", "spacing", "--spacing", nargs=3, type=float, metavar=("X", "Y", "Z"))
    p.add_argument("--hu-window", type=float, nargs=2, default=(250.0, 30.0), metavar=("WIDTH", "LEVEL"),
                   help="HU window (default 250 30 -> [-95, 155] HU)")
    deprecated_alias(p, "--window", "hu_window", "--hu-window WIDTH LEVEL", nargs=2, type=float,
                     metavar=("WIDTH", "LEVEL"))
    p.add_argument("--region", choices=("mask", "image"), default="mask", help="z-score statistics region")
    p.add_argument("--min-area-mm2", type=float, default=0.0, help="smallest tumour area for a slice to count")
    p.add_argument("--roi-size-mm", type=float, default=96.0, help="in-plane crop size in mm (default 96)")
    p.add_argument("--png", action="store_true", help="also save a montage of the slices (image + contour)")
    p.add_argument("--overwrite", action="store_true", help="replace the slices of an earlier run in --out")
    p.set_defaults(handler=run)


OUTPUTS = ("slices.npz", "slices.csv", "slices.png")


def preprocess_patient(image, mask, patient_id: str | None = None, pixdim=(1.0, 1.0, 5.0), window=(250.0, 30.0),
                       region: str = "mask", min_area_mm2: float = 0.0, roi_size_mm: float = 96.0) -> list[dict]:
    """Checked image/mask files -> list of per-slice sample dicts (see TumourSlicesd)."""
    from voxsurv.ingest.volumes import check_image_mask, to_metatensor

    img, msk = check_image_mask(image, mask, patient_id)  # before importing MONAI: bad input fails fast
    from monai.transforms import Compose

    from custom_transforms import HUWindowZScored, ResampleToSpacingd, TumourSlicesd

    sample = {"image": to_metatensor(img, image), "mask": to_metatensor(msk, mask),
              "patient_id": patient_id or _stem(image)}
    pipeline = Compose([
        ResampleToSpacingd(("image", "mask"), pixdim=pixdim),
        HUWindowZScored("image", mask_key="mask", width=window[0], level=window[1], region=region),
        TumourSlicesd("image", mask_key="mask", min_area_mm2=min_area_mm2, roi_size_mm=roi_size_mm),
    ])
    return pipeline(sample)


def _stem(path) -> str:
    from pathlib import Path

    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def save_slices(slices: list[dict], out_dir, png: bool = False):
    """``slices.npz`` (image float32 (S, C, H, W), mask uint8, slice_index, z_mm, tumour_area_mm2)
    and ``slices.csv`` (one row per slice); optional ``slices.png`` montage. Returns the table."""
    from pathlib import Path

    import numpy as np
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = np.stack([s["image"].numpy() for s in slices]).astype(np.float32)
    mask = np.stack([s["mask"].numpy() for s in slices]).astype(np.uint8)
    table = pd.DataFrame({
        "patient_id": [s["patient_id"] for s in slices],
        "slice_index": [s["slice_index"] for s in slices],
        "z_mm": [round(s["z_mm"], 3) for s in slices],
        "tumour_area_mm2": [s["image"].meta["tumour_area_mm2"] for s in slices],
        "crop_mean": image.mean(axis=(1, 2, 3)).round(4),
        "crop_std": image.std(axis=(1, 2, 3)).round(4),
    })
    np.savez_compressed(out_dir / "slices.npz", image=image, mask=mask, slice_index=table["slice_index"].to_numpy(),
                        z_mm=table["z_mm"].to_numpy(), tumour_area_mm2=table["tumour_area_mm2"].to_numpy())
    table.to_csv(out_dir / "slices.csv", index=False)
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = len(slices)
        cols = min(n, 8)
        rows = (n + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, img, m, (_, r) in zip(axes.flat, image, mask, table.iterrows()):
            ax.imshow(img[0].T, cmap="gray", origin="lower")  # (x, y) -> rows y, cols x
            ax.contour(m[0].T, levels=[0.5], colors="r", linewidths=0.6, origin="lower")
            ax.set_title(f"k={r.slice_index} z={r.z_mm:.0f}", fontsize=6)
        fig.tight_layout()
        fig.savefig(out_dir / "slices.png", dpi=120)
        plt.close(fig)
    return table


def run(args) -> int:
    from pathlib import Path

    import pandas as pd

    from voxsurv.commands import window_bounds
    from voxsurv.console import progress_bar, warn
    from voxsurv.errors import InputError, UsageError
    from voxsurv.output_paths import check_output_folder, refuse_to_replace, staged_outputs
    from voxsurv.tables import write_csv_atomic

    if not args.out:
        raise UsageError("--out is required (the output folder)")
    window_bounds(args.hu_window)  # a width <= 0 is bad input, before any work
    opts = dict(pixdim=tuple(args.spacing), window=tuple(args.hu_window), region=args.region,
                min_area_mm2=args.min_area_mm2, roi_size_mm=args.roi_size_mm)
    out = check_output_folder(args.out)
    if args.manifest:
        if args.image or args.mask:
            raise UsageError("give either --manifest or --image/--mask, not both")
        from voxsurv.manifest import load_manifest
        from voxsurv.patient_folders import patient_folder_name

        df = load_manifest(args.manifest)
        refuse_to_replace(out, ["exclusions.csv"], args.overwrite)
        excluded, total = [], 0
        for rec in progress_bar(df.to_dict("records"), total=len(df), desc="preprocess", unit="patient"):
            try:
                slices = preprocess_patient(rec["image"], rec["mask"], rec["patient_id"], **opts)
            except InputError as err:
                excluded.append({"patient_id": rec["patient_id"], "problem": err.problem, "message": str(err)})
                continue
            with staged_outputs(out / patient_folder_name(rec["patient_id"])) as stage:
                total += len(save_slices(slices, stage, png=args.png))
        write_csv_atomic(pd.DataFrame(excluded, columns=["patient_id", "problem", "message"]), out / "exclusions.csv")
        print(f"{len(df) - len(excluded)} patient(s), {total} slices -> {out}; "
              f"{len(excluded)} excluded -> {out / 'exclusions.csv'}")
        for row in excluded:
            warn(f"excluded: {row['message']}")
        return 0
    if not (args.image and args.mask):
        raise UsageError("give --image and --mask (or --manifest)")
    refuse_to_replace(out, OUTPUTS, args.overwrite)
    slices = preprocess_patient(args.image, args.mask, args.patient_id, **opts)
    with staged_outputs(out) as stage:
        table = save_slices(slices, stage, png=args.png)
    s0 = slices[0]["image"]
    print(f"patient {slices[0]['patient_id']}: {len(slices)} tumour slices of shape {tuple(s0.shape)} "
          f"at {tuple(float(v) for v in args.spacing)} mm; z-score region {args.region}: mean "
          f"{s0.meta['zscore_mean_hu']:.2f} HU, std {s0.meta['zscore_std_hu']:.2f} HU (after window "
          f"{s0.meta['hu_window'][0]:g}..{s0.meta['hu_window'][1]:g})")
    print(table.to_string(index=False))
    print(f"wrote {Path(out) / 'slices.npz'} and slices.csv" + (" and slices.png" if args.png else ""))
    return 0
