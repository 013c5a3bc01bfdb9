"""`voxsurv maps`: voxel-level radiomics maps for a cohort (cached, resumable) or one patient.

Cohort:  voxsurv maps --manifest M --out-dir D [--backend torch|pyradiomics] [--workers N]
                      [--features glcm,firstorder_Mean] [--dask-scheduler tcp://host:8786]
Patient: voxsurv maps --image CT --mask GTV --out maps.nii.gz [--png montage.png
                      --png-maps firstorder_Mean,glcm_Contrast]
"""

from __future__ import annotations

import logging

log = logging.getLogger("voxsurv.maps")

DEFAULT_PNG_MAPS = ("firstorder_Mean", "firstorder_Entropy", "glcm_Contrast", "glcm_JointEntropy",
                    "glrlm_RunEntropy", "glszm_ZoneEntropy", "gldm_DependenceEntropy",
                    "ngtdm_Busyness")


def register(sub) -> None:
    p = sub.add_parser("maps", help="voxel-level radiomics maps (cohort cache or one patient)",
                       description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    g = p.add_argument_group("cohort mode")
    g.add_argument("--manifest", help="cohort CSV (patient_id, image, mask, time_days, event)")
    g.add_argument("--out-dir", help="output folder (maps cache maps/<key>/, maps_index.csv, "
                                     "exclusions.csv)")
    g.add_argument("--workers", type=int, default=1, help="parallel patient processes [1]")
    g.add_argument("--threads", type=int, default=1,
                   help="torch threads per patient [1; parallelise with --workers instead]")
    g.add_argument("--dask-scheduler", metavar="ADDRESS",
                   help="send patients to an existing Dask scheduler instead of local processes")
    s = p.add_argument_group("single-patient mode")
    s.add_argument("--image", help="CT volume (HU)")
    s.add_argument("--mask", help="tumour mask on the CT grid")
    s.add_argument("--out", help="maps file: .nii.gz/.nii (4D, + .json with channel names) or .npz")
    s.add_argument("--png", help="montage of chosen maps over the CT slice with the largest tumour")
    s.add_argument("--png-maps", help=f"comma-separated maps for --png [{','.join(DEFAULT_PNG_MAPS)}]")
    m = p.add_argument_group("map settings (defaults: the paper's)")
    m.add_argument("--backend", choices=("torch", "pyradiomics"), default="torch",
                   help="torch engine (fast) or PyRadiomics (reference) [torch]")
    m.add_argument("--features", help="comma-separated classes or names [all 90]")
    m.add_argument("--radius", type=int, default=1, help="kernel radius in voxels [1 = 3x3]")
    m.add_argument("--bin-width", type=float, default=25.0, help="HU per bin [25]")
    m.add_argument("--bin-count", type=int, default=None, help="fixed number of bins instead")
    m.add_argument("--window", type=float, nargs=2, default=(-95.0, 155.0), metavar=("LOW", "HIGH"),
                   help="HU clip window [-95 155]")
    m.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 5.0),
                   metavar=("X", "Y", "Z"), help="resample to this grid in mm [1 1 5]")
    m.add_argument("--no-resample", action="store_true", help="use the image's own grid")
    m.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="torch compute precision [float64]")
    m.add_argument("--device", default=None, help="torch device (cpu, cuda) [cpu]")
    p.set_defaults(handler=run)


def _settings(args):
    from voxelmaps.settings import MapSettings

    return MapSettings(radius=args.radius, bin_width=args.bin_width, bin_count=args.bin_count,
                       window=tuple(args.window), dtype=args.dtype)


def run(args) -> int:
    from voxsurv.errors import InputError

    try:
        if args.manifest:
            return _run_cohort(args)
        if args.image and args.mask and args.out:
            return _run_patient(args)
    except InputError as exc:
        log.error("%s", exc)
        return 2
    log.error("give either --manifest and --out-dir (cohort) or --image, --mask and --out "
              "(one patient)")
    return 2


def _run_cohort(args) -> int:
    """The cohort through custom_transforms.pipeline.volume_preprocessing with the maps cache in
    <out-dir>/maps: cached maps lie on the bundles' grid, and bundles given that cache read them."""
    from pathlib import Path

    from custom_transforms.pipeline import volume_preprocessing
    from voxelmaps.cohort import RecordReader, run_cohort
    from voxelmaps.features import resolve_features
    from voxsurv.errors import InputError
    from voxsurv.ingest.volumes import check_image_mask
    from voxsurv.manifest import load_manifest

    if not args.out_dir:
        raise InputError("--out-dir is required with --manifest")
    features = resolve_features(args.features)
    chain = volume_preprocessing(features, pixdim=None if args.no_resample else tuple(args.spacing),
                                 maps_backend=args.backend, maps_cache_dir=Path(args.out_dir) / "maps",
                                 maps_settings=_settings(args), maps_device=args.device)
    # missing files become that patient's exclusion (checked per patient), not a failed run
    records = load_manifest(args.manifest, check_files=False)[["patient_id", "image", "mask"]].to_dict("records")
    log.info("maps for %d patients -> %s (%s backend, %d features)", len(records), args.out_dir,
             args.backend, len(features))
    rows = run_cohort(records, RecordReader(chain, check=check_image_mask), args.out_dir, workers=args.workers,
                      threads=args.threads, dask_scheduler=args.dask_scheduler)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("computed", "cached", "excluded")}
    log.info("done: %(computed)d computed, %(cached)d cached, %(excluded)d excluded", counts)
    if counts["excluded"]:
        log.warning("excluded patients are listed in %s/exclusions.csv", args.out_dir)
    return 0


def _sitk_like(array_xyz, affine_ras):
    """(x, y, z) array + MONAI (RAS) affine -> SimpleITK image with the same geometry (LPS)."""
    import numpy as np
    import SimpleITK as sitk

    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine_ras, dtype=np.float64)  # RAS -> LPS
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array_xyz).transpose(2, 1, 0)))
    img.SetSpacing(spacing.tolist())
    img.SetDirection((affine[:3, :3] / spacing).flatten().tolist())
    img.SetOrigin(affine[:3, 3].tolist())
    return img


def _run_patient(args) -> int:
    """One patient through custom_transforms.pipeline.volume_preprocessing (the bundles' grid and
    maps), written as a 4D NIfTI (x, y, z, feature) or an .npz."""
    import json
    from pathlib import Path

    import numpy as np
    import SimpleITK as sitk

    from custom_transforms.pipeline import volume_preprocessing
    from voxelmaps.features import resolve_features
    from voxsurv.errors import InputError, input_error_in
    from voxsurv.ingest.volumes import check_image_mask, to_metatensor

    image, mask = check_image_mask(args.image, args.mask)
    settings = _settings(args)
    names = resolve_features(args.features)
    chain = volume_preprocessing(names, pixdim=None if args.no_resample else tuple(args.spacing), load=False,
                                 maps_backend=args.backend, maps_settings=settings, maps_device=args.device)
    try:
        d = chain({"image": to_metatensor(image, args.image), "mask": to_metatensor(mask, args.mask),
                   "patient_id": Path(args.image).name})
    except Exception as exc:  # MONAI's Compose wraps our InputError in a RuntimeError
        err = input_error_in(exc)
        if err is None:
            raise
        raise InputError(err.problem, path=args.mask, fix=err.fix or "check the contour") from None
    affine = d["image"].affine.numpy()
    img = d["image"][0].numpy().transpose(2, 1, 0)  # (z, y, x), as the montage and the .npz have it
    roi = d["mask"][0].numpy().transpose(2, 1, 0) > 0
    maps = d["maps"].numpy().transpose(0, 3, 2, 1)  # (F, z, y, x)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    geometry = _sitk_like(d["image"][0].numpy(), affine)
    meta = {"names": names, "axes": "F,z,y,x", "settings": settings.to_dict(),
            "backend": args.backend, "spacing_xyz_mm": list(geometry.GetSpacing()),
            "origin_xyz_mm": list(geometry.GetOrigin()), "direction": list(geometry.GetDirection())}
    if out.suffix == ".npz":
        np.savez_compressed(out, maps=maps.astype(np.float32), image=img, mask=roi.astype(np.uint8),
                            names=np.array(names))
    else:
        vols = [_sitk_like(m, affine) for m in d["maps"].numpy().astype(np.float32)]
        sitk.WriteImage(sitk.JoinSeries(vols), str(out))  # 4D: x, y, z, feature
        sidecar = out.with_name(out.name.split(".")[0] + ".json")
        sidecar.write_text(json.dumps(meta, indent=1))
    log.info("wrote %d maps %s to %s", len(names), maps.shape[1:], out)
    if args.png:
        chosen = args.png_maps.split(",") if args.png_maps else \
            [n for n in DEFAULT_PNG_MAPS if n in names] or names[:8]
        from voxelmaps.montage import draw_montage

        draw_montage(img, roi, maps, names, chosen, args.png,
                     title=f"{Path(args.image).name}: voxel radiomics maps ({args.backend})")
        log.info("wrote montage of %d maps to %s", len(chosen), args.png)
    return 0
