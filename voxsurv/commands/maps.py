"""`voxsurv maps`: voxel-level radiomics maps for a cohort (cached, resumable) or one patient.

Cohort:  voxsurv maps --manifest M --out D [--backend torch|pyradiomics] [--workers N]
                      [--features glcm,firstorder_Mean] [--dask-scheduler tcp://host:8786]
Patient: voxsurv maps --image CT --mask GTV --out D [--png] [--png-maps firstorder_Mean,glcm_Contrast]
         (writes D/maps.nii.gz + D/maps.json, or D/maps.npz with --format npz, and D/montage.png)
"""

from __future__ import annotations

import logging

log = logging.getLogger("voxsurv.maps")

DEFAULT_PNG_MAPS = ("firstorder_Mean", "firstorder_Entropy", "glcm_Contrast", "glcm_JointEntropy",
                    "glrlm_RunEntropy", "glszm_ZoneEntropy", "gldm_DependenceEntropy",
                    "ngtdm_Busyness")
MONTAGE = "montage.png"


def register(sub) -> None:
    from voxsurv.commands import deprecated_alias, width_level

    p = sub.add_parser("maps", help="voxel-level radiomics maps (cohort cache or one patient)",
                       description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    p.add_argument("--out", help="output folder (cohort: maps cache maps/<key>/, maps_index.csv, exclusions.csv; "
                                 "one patient: maps.nii.gz + maps.json or maps.npz, montage.png)")
    deprecated_alias(p, "--out-dir", "out", "--out")
    g = p.add_argument_group("cohort mode")
    g.add_argument("--manifest", help="cohort CSV (patient_id, image, mask, time_days, event)")
    g.add_argument("--workers", type=int, default=1, help="parallel patient processes [1]")
    g.add_argument("--threads", type=int, default=1,
                   help="torch threads per patient [1; parallelise with --workers instead]")
    g.add_argument("--dask-scheduler", metavar="ADDRESS",
                   help="send patients to an existing Dask scheduler instead of local processes")
    s = p.add_argument_group("single-patient mode")
    s.add_argument("--image", help="CT volume (HU)")
    s.add_argument("--mask", help="tumour mask on the CT grid")
    s.add_argument("--format", choices=("nifti", "npz"), default="nifti",
                   help="nifti: 4D maps.nii.gz + maps.json (channel names); npz: maps.npz [nifti]")
    s.add_argument("--png", nargs="?", const=MONTAGE, default=None, metavar="FILE",
                   help=f"also draw a montage of chosen maps over the slice with the largest tumour (OUT/{MONTAGE}); "
                        "giving a FILE is a deprecated spelling")
    s.add_argument("--png-maps", help=f"comma-separated maps for --png [{','.join(DEFAULT_PNG_MAPS)}]")
    s.add_argument("--overwrite", action="store_true", help="replace maps of an earlier run in --out")
    m = p.add_argument_group("map settings (defaults: the paper's)")
    m.add_argument("--backend", choices=("torch", "pyradiomics"), default="torch",
                   help="torch engine (fast) or PyRadiomics (reference) [torch]")
    m.add_argument("--features", help="comma-separated classes or names [all 90]")
    m.add_argument("--radius", type=int, default=1, help="kernel radius in voxels [1 = 3x3]")
    m.add_argument("--bin-width", type=float, default=25.0, help="HU per bin [25]")
    m.add_argument("--bin-count", type=int, default=None, help="fixed number of bins instead")
    m.add_argument("--hu-window", type=float, nargs=2, default=(250.0, 30.0), metavar=("WIDTH", "LEVEL"),
                   help="HU window the CT is clipped to [250 30 = -95..155 HU]")
    deprecated_alias(m, "--window", "hu_window", "--hu-window WIDTH LEVEL", convert=width_level, nargs=2,
                     type=float, metavar=("LOW", "HIGH"),
                     help="deprecated: --window LOW HIGH; use --hu-window WIDTH LEVEL")
    m.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 5.0),
                   metavar=("X", "Y", "Z"), help="resample to this grid in mm [1 1 5]")
    m.add_argument("--no-resample", action="store_true", help="use the image's own grid")
    m.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="torch compute precision [float64]")
    m.add_argument("--device", default=None, help="torch device (cpu, cuda) [cpu]")
    p.set_defaults(handler=run)


def _settings(args):
    from voxsurv.maps.settings import MapSettings
    from voxsurv.commands import window_bounds

    return MapSettings(radius=args.radius, bin_width=args.bin_width, bin_count=args.bin_count,
                       window=window_bounds(args.hu_window), dtype=args.dtype)


def run(args) -> int:
    from voxsurv.core.errors import UsageError

    if args.manifest:
        if args.image or args.mask:
            raise UsageError("give either --manifest (cohort) or --image and --mask (one patient), not both")
        if not args.out:
            raise UsageError("--manifest needs --out (the cohort's output folder)")
        return _run_cohort(args)
    if args.image and args.mask and args.out:
        return _run_patient(args)
    raise UsageError("give either --manifest and --out (cohort) or --image, --mask and --out (one patient)")


class _CohortProgress(logging.Handler):
    """Turns the cohort runner's per-patient log lines ("maps 3/20: ...") into tqdm steps."""

    def __init__(self, bar) -> None:
        super().__init__(logging.INFO)
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("maps %d/%d"):
            self.bar.update(1)
            self.bar.set_postfix_str(str(record.args[2]) if record.args and len(record.args) > 2 else "")


def _run_cohort(args) -> int:
    """The cohort through custom_transforms.pipeline.volume_preprocessing with the maps cache in
    <out>/maps: cached maps lie on the bundles' grid, and bundles given that cache read them."""
    from pathlib import Path

    from voxsurv.maps.features import resolve_features
    from voxsurv.core.console import progress_bar, warn
    from voxsurv.core.output_paths import check_output_folder
    from voxsurv.core.tables import read_csv_table

    check_output_folder(args.out)
    read_csv_table(args.manifest, "manifest")  # encoding / format errors, before any work
    features = resolve_features(args.features)
    from custom_transforms.pipeline import volume_preprocessing
    from voxsurv.maps.cohort import RecordReader, run_cohort
    from voxsurv.data.ingest.volumes import check_image_mask
    from voxsurv.data.manifest import load_manifest

    chain = volume_preprocessing(features, pixdim=None if args.no_resample else tuple(args.spacing),
                                 maps_backend=args.backend, maps_cache_dir=Path(args.out) / "maps",
                                 maps_settings=_settings(args), maps_device=args.device)
    # missing files become that patient's exclusion (checked per patient), not a failed run
    records = load_manifest(args.manifest, check_files=False)[["patient_id", "image", "mask"]].to_dict("records")
    log.info("maps for %d patients -> %s (%s backend, %d features)", len(records), args.out,
             args.backend, len(features))
    bar = progress_bar(total=len(records), desc="maps", unit="patient")
    runner_log = logging.getLogger("voxsurv.maps.cohort")
    handler, level = _CohortProgress(bar), runner_log.level
    runner_log.addHandler(handler)
    runner_log.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        rows = run_cohort(records, RecordReader(chain, check=check_image_mask), args.out, workers=args.workers,
                          threads=args.threads, dask_scheduler=args.dask_scheduler)
    finally:
        runner_log.removeHandler(handler)
        runner_log.setLevel(level)
        bar.close()
    counts = {s: sum(r["status"] == s for r in rows) for s in ("computed", "cached", "excluded")}
    print("maps: {computed} computed, {cached} from the cache, {excluded} excluded -> ".format(**counts)
          + f"{args.out}/maps_index.csv")
    if counts["excluded"]:
        warn(f"{counts['excluded']} excluded patient(s) are listed in {args.out}/exclusions.csv")
    return 0


def _outputs(args) -> tuple:
    """(maps file, sidecar or None, montage or None) of single-patient mode; an ``--out`` ending in
    .nii.gz/.nii/.npz is the deprecated file spelling."""
    from pathlib import Path

    from voxsurv.core.console import deprecated_option

    out = Path(args.out)
    if out.name.lower().endswith((".nii.gz", ".nii", ".npz")):
        deprecated_option(f"--out {out.name}", "--out FOLDER [--format npz]", "--out is an output folder in every command")
        maps_file = out
        folder = out.parent
        sidecar = None if out.suffix == ".npz" else out.with_name(out.name.split(".")[0] + ".json")
    else:
        folder = out
        maps_file = folder / ("maps.npz" if args.format == "npz" else "maps.nii.gz")
        sidecar = None if args.format == "npz" else folder / "maps.json"
    montage = None
    if args.png:
        if args.png != MONTAGE:
            deprecated_option(f"--png {args.png}", f"--png (writes OUT/{MONTAGE})")
            montage = Path(args.png)
        else:
            montage = folder / MONTAGE
    return folder, maps_file, sidecar, montage


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
    maps), written as a 4D NIfTI (x, y, z, feature) + channel names, or an .npz; optional montage."""
    import json
    import os
    from pathlib import Path

    from voxsurv.maps.features import resolve_features
    from voxsurv.core.console import Steps
    from voxsurv.core.errors import InputError, input_error_in
    from voxsurv.data.ingest.volumes import check_image_mask
    from voxsurv.core.output_paths import check_output_folder, refuse_to_replace, staged_outputs

    folder, maps_file, sidecar, montage = _outputs(args)
    check_output_folder(folder)
    for f in (maps_file, sidecar, montage):
        if f is not None:
            check_output_folder(f.parent)
            refuse_to_replace(f.parent, [f.name], args.overwrite)
    settings = _settings(args)
    names = resolve_features(args.features)  # a misspelt map name fails before any work
    steps = Steps(3 + bool(montage), Path(args.image).name)
    with steps.step("checking the input"):
        image, mask = check_image_mask(args.image, args.mask)
    import numpy as np
    import SimpleITK as sitk

    from custom_transforms.pipeline import volume_preprocessing
    from voxsurv.data.ingest.volumes import to_metatensor

    chain = volume_preprocessing(names, pixdim=None if args.no_resample else tuple(args.spacing), load=False,
                                 maps_backend=args.backend, maps_settings=settings, maps_device=args.device)
    with steps.step(f"resampling and computing {len(names)} maps ({args.backend} backend)"):
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
    geometry = _sitk_like(d["image"][0].numpy(), affine)
    meta = {"names": names, "axes": "F,z,y,x", "settings": settings.to_dict(),
            "backend": args.backend, "spacing_xyz_mm": list(geometry.GetSpacing()),
            "origin_xyz_mm": list(geometry.GetOrigin()), "direction": list(geometry.GetDirection())}
    with steps.step("writing"), staged_outputs(maps_file.parent) as stage:
        tmp_maps = stage / maps_file.name
        if maps_file.suffix == ".npz":
            np.savez_compressed(tmp_maps, maps=maps.astype(np.float32), image=img, mask=roi.astype(np.uint8),
                                names=np.array(names))
        else:
            vols = [_sitk_like(m, affine) for m in d["maps"].numpy().astype(np.float32)]
            sitk.WriteImage(sitk.JoinSeries(vols), str(tmp_maps))  # 4D: x, y, z, feature
            (stage / sidecar.name).write_text(json.dumps(meta, indent=1))
    written = [maps_file] + ([sidecar] if sidecar else [])
    if montage:
        chosen = args.png_maps.split(",") if args.png_maps else \
            [n for n in DEFAULT_PNG_MAPS if n in names] or names[:8]
        from voxsurv.maps.montage import draw_montage

        with steps.step(f"drawing the montage of {len(chosen)} maps"):
            tmp = montage.with_name(f".{montage.name}.partial.png")
            try:
                draw_montage(img, roi, maps, names, chosen, tmp,
                             title=f"{Path(args.image).name}: voxel radiomics maps ({args.backend})")
                os.replace(tmp, montage)
            finally:
                tmp.unlink(missing_ok=True)
        written.append(montage)
    print(f"{len(names)} maps of {tuple(maps.shape[1:])} voxels -> {', '.join(str(w) for w in written)}")
    return 0
