"""`voxsurv preprocess`: one patient's CT + tumour mask (NIfTI/NRRD, e.g. from `voxsurv convert`)
-> what the network sees, saved for inspection: the chain of every bundle
(custom_transforms.pipeline) without the maps: resample to 1 x 1 x 5 mm, CT through the HU window
250/30 -> [0, 1], a mask channel, one field of view per patient that holds the whole tumour,
(2, H, W, S) = (ct, mask) x tumour slices."""

from __future__ import annotations


def register(sub) -> None:
    from voxsurv.commands import deprecated_alias

    p = sub.add_parser("preprocess", help="CT + mask -> the network's tumour-slice stack (npz + csv [+ png])",
                       description="Runs the bundles' preprocessing (without the maps) on one patient "
                                   "(--image/--mask) or on every patient of a manifest (--manifest; bad patients "
                                   "go to OUT/exclusions.csv).")
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
                   help="HU window mapped to [0, 1] (default 250 30 -> [-95, 155] HU)")
    deprecated_alias(p, "--window", "hu_window", "--hu-window WIDTH LEVEL", nargs=2, type=float,
                     metavar=("WIDTH", "LEVEL"))
    p.add_argument("--min-area-mm2", type=float, default=10.0, help="smallest tumour area for a slice to count [10]")
    p.add_argument("--img-size", type=int, default=48, help="in-plane size of each slice, pixels [48]")
    p.add_argument("--fov-margin", type=float, default=0.15,
                   help="field-of-view margin per side, fraction of the largest tumour extent [0.15]")
    p.add_argument("--min-fov-mm", type=float, default=20.0, help="smallest field of view, mm [20]")
    p.add_argument("--png", action="store_true", help="also save a montage of the slices (CT + contour)")
    p.add_argument("--overwrite", action="store_true", help="replace the slices of an earlier run in --out")
    p.set_defaults(handler=run)


OUTPUTS = ("slices.npz", "slices.csv", "slices.png")


def preprocess_patient(image, mask, patient_id: str | None = None, pixdim=(1.0, 1.0, 5.0), window=(250.0, 30.0),
                       min_area_mm2: float = 10.0, img_size: int = 48, fov_margin: float = 0.15,
                       min_fov_mm: float = 20.0) -> dict:
    """Checked image/mask files -> ``{"image": (2, H, W, S) MetaTensor (ct, mask), "descriptors",
    "patient_id"}`` from custom_transforms.pipeline (volume + stack stage, no maps). InputError
    naming the patient for bad input."""
    from voxsurv.core.errors import input_error_in
    from voxsurv.data.ingest.volumes import check_image_mask, to_metatensor

    img, msk = check_image_mask(image, mask, patient_id)  # before importing MONAI: bad input fails fast
    from monai.transforms import Compose

    from custom_transforms.pipeline import stack_preprocessing, volume_preprocessing

    sample = {"image": to_metatensor(img, image), "mask": to_metatensor(msk, mask),
              "patient_id": patient_id or _stem(image)}
    chain = Compose([volume_preprocessing(features=[], pixdim=pixdim, load=False),
                     stack_preprocessing(features=[], img_size=img_size, min_area_mm2=min_area_mm2,
                                         fov_margin=fov_margin, min_fov_mm=min_fov_mm, hu_window=window)])
    try:
        return chain(sample)
    except Exception as exc:  # MONAI's Compose wraps our InputError in a RuntimeError
        err = input_error_in(exc)
        if err is None:
            raise
        raise err.with_patient(sample["patient_id"]) from None


def _stem(path) -> str:
    from pathlib import Path

    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def save_slices(sample: dict, out_dir, png: bool = False):
    """``slices.npz`` (image float32 (C, H, W, S) as the network sees it, channel_names,
    slice_index, crop_boxes, tumour_area_mm2, fov_mm, descriptors) and ``slices.csv`` (one row per
    slice); optional ``slices.png`` montage. Returns the table."""
    from pathlib import Path

    import numpy as np
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x = sample["image"]
    image = x.numpy().astype(np.float32)
    meta = x.meta
    boxes = meta["crop_boxes"].numpy()
    table = pd.DataFrame({
        "patient_id": sample["patient_id"],
        "slice_index": meta["slice_indices"].numpy(),
        "tumour_area_mm2": meta["tumour_area_mm2"].numpy().round(1),
        "crop_x0": boxes[:, 0], "crop_y0": boxes[:, 1], "crop_width_x": boxes[:, 2], "crop_width_y": boxes[:, 3],
        "ct_mean": image[0].mean(axis=(0, 1)).round(4),
        "mask_fraction": image[-1].mean(axis=(0, 1)).round(4),
    })
    np.savez_compressed(out_dir / "slices.npz", image=image, channel_names=np.array(meta["channel_names"]),
                        slice_index=table["slice_index"].to_numpy(), crop_boxes=boxes,
                        tumour_area_mm2=meta["tumour_area_mm2"].numpy(), fov_mm=float(meta["fov_mm"]),
                        descriptors=sample["descriptors"].numpy())
    table.to_csv(out_dir / "slices.csv", index=False)
    if png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = image.shape[-1]
        cols = min(n, 8)
        rows = (n + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for s, (ax, (_, r)) in enumerate(zip(axes.flat, table.iterrows())):
            ax.imshow(image[0, :, :, s].T, cmap="gray", origin="lower", vmin=0.0, vmax=1.0)  # (x, y) -> rows y
            ax.contour(image[-1, :, :, s].T, levels=[0.5], colors="r", linewidths=0.6, origin="lower")
            ax.set_title(f"k={r.slice_index}", fontsize=6)
        fig.suptitle(f"{sample['patient_id']}: field of view {float(meta['fov_mm']):.0f} mm", fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "slices.png", dpi=120)
        plt.close(fig)
    return table


def run(args) -> int:
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from voxsurv.commands import window_bounds
    from voxsurv.core.console import progress_bar, warn
    from voxsurv.core.errors import InputError, UsageError
    from voxsurv.core.output_paths import check_output_folder, refuse_to_replace, staged_outputs
    from voxsurv.core.tables import write_csv_atomic

    if not args.out:
        raise UsageError("--out is required (the output folder)")
    window_bounds(args.hu_window)  # a width <= 0 is bad input, before any work
    opts = dict(pixdim=tuple(args.spacing), window=tuple(args.hu_window), min_area_mm2=args.min_area_mm2,
                img_size=args.img_size, fov_margin=args.fov_margin, min_fov_mm=args.min_fov_mm)
    out = check_output_folder(args.out)
    if args.manifest:
        if args.image or args.mask:
            raise UsageError("give either --manifest or --image/--mask, not both")
        from voxsurv.data.manifest import load_manifest
        from voxsurv.core.patient_folders import patient_folder_name

        df = load_manifest(args.manifest)
        refuse_to_replace(out, ["exclusions.csv"], args.overwrite)
        excluded, total = [], 0
        for rec in progress_bar(df.to_dict("records"), total=len(df), desc="preprocess", unit="patient"):
            try:
                sample = preprocess_patient(rec["image"], rec["mask"], rec["patient_id"], **opts)
            except InputError as err:
                excluded.append({"patient_id": rec["patient_id"], "problem": err.problem, "message": str(err)})
                continue
            with staged_outputs(out / patient_folder_name(rec["patient_id"])) as stage:
                total += len(save_slices(sample, stage, png=args.png))
        write_csv_atomic(pd.DataFrame(excluded, columns=["patient_id", "problem", "message"]), out / "exclusions.csv")
        print(f"{len(df) - len(excluded)} patient(s), {total} slices -> {out}; "
              f"{len(excluded)} excluded -> {out / 'exclusions.csv'}")
        for row in excluded:
            warn(f"excluded: {row['message']}")
        return 0
    if not (args.image and args.mask):
        raise UsageError("give --image and --mask (or --manifest)")
    refuse_to_replace(out, OUTPUTS, args.overwrite)
    sample = preprocess_patient(args.image, args.mask, args.patient_id, **opts)
    with staged_outputs(out) as stage:
        table = save_slices(sample, stage, png=args.png)
    x = sample["image"]
    log_ml, mean_hu = (float(v) for v in sample["descriptors"])
    print(f"patient {sample['patient_id']}: {x.shape[-1]} tumour slices, network input {tuple(x.shape)} "
          f"({', '.join(x.meta['channel_names'])} x slices) at {tuple(float(v) for v in args.spacing)} mm; "
          f"field of view {float(x.meta['fov_mm']):g} mm, {int(x.meta['tumour_cut_slices'])} slices cut; "
          f"tumour {np.exp(log_ml):.1f} ml, mean {mean_hu:.1f} HU")
    print(table.to_string(index=False))
    print(f"wrote {Path(out) / 'slices.npz'} and slices.csv" + (" and slices.png" if args.png else ""))
    return 0
