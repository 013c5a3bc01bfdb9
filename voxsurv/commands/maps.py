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


def _run_patient(args) -> int:
    import json
    from pathlib import Path

    import numpy as np
    import SimpleITK as sitk

    from voxelmaps.api import compute_maps
    from voxelmaps.cohort import resample_to_spacing
    from voxsurv.errors import InputError
    from voxsurv.ingest.volumes import check_image_mask

    image, mask = check_image_mask(args.image, args.mask)
    if not args.no_resample:
        image, mask = resample_to_spacing(image, mask, tuple(args.spacing))
    img = sitk.GetArrayFromImage(image).astype(np.float32)
    roi = sitk.GetArrayFromImage(mask) > 0
    if not roi.any():
        raise InputError("mask is empty after resampling", path=args.mask,
                         fix="use --no-resample or check the contour")
    settings = _settings(args)
    maps, names = compute_maps(img, roi, tuple(image.GetSpacing()[::-1]), args.features,
                               backend=args.backend, settings=settings, device=args.device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"names": names, "axes": "F,z,y,x", "settings": settings.to_dict(),
            "backend": args.backend, "spacing_xyz_mm": list(image.GetSpacing()),
            "origin_xyz_mm": list(image.GetOrigin()), "direction": list(image.GetDirection())}
    if out.suffix == ".npz":
        np.savez_compressed(out, maps=maps.astype(np.float32), image=img, mask=roi.astype(np.uint8),
                            names=np.array(names))
    else:
        vols = []
        for m in maps.astype(np.float32):
            v = sitk.GetImageFromArray(m)
            v.CopyInformation(image)
            vols.append(v)
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
