"""DICOM CT + RTSTRUCT (or DICOM SEG) -> ``image.nii.gz`` (int16 HU) + ``mask.nii.gz`` (uint8), one patient or
a batch from a CSV with per-patient exclusions recorded and the run going on."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from voxsurv.core.errors import InputError
from voxsurv.data.ingest.dicom_series import pick_ct_series, read_ct_series, scan_series
from voxsurv.data.ingest.rtstruct import rasterise, read_rtstruct, select_roi

log = logging.getLogger(__name__)

BATCH_COLUMNS = ("patient_id", "ct_dir")
LABEL_COLUMNS = ("rtstruct", "seg")
EXCLUSION_COLUMNS = ("patient_id", "problem", "path", "fix", "message")


@dataclass
class Conversion:
    """What one conversion wrote and found."""

    patient_id: str | None
    roi_name: str
    image_path: Path
    mask_path: Path
    size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    mask_voxels: int
    mask_volume_ml: float


def convert_patient(ct_dir: str | Path, rtstruct: str | Path | None, roi: str, out_dir: str | Path,
                    patient_id: str | None = None, seg: str | Path | None = None) -> Conversion:
    """Convert one patient: CT series (the one the RTSTRUCT/SEG references, when present) to int16
    HU NIfTI with its geometry, and the ROI (RTSTRUCT) or segment (DICOM SEG, ``seg=``) whose name
    matches ``roi`` (case-insensitive regex) to a uint8 mask on the same grid. Raises InputError
    (naming ``patient_id``) for any bad input."""
    if (rtstruct is None) == (seg is None):
        raise InputError("give exactly one of an RTSTRUCT or a DICOM SEG", patient_id, fix="use --rtstruct or --seg")
    label_path = Path(rtstruct if rtstruct is not None else seg)
    if rtstruct is not None:
        ds = read_rtstruct(rtstruct, patient_id)
        contours = select_roi(ds, roi, patient_id, rtstruct)
        name, frame, series_uid = contours.name, contours.frame_of_reference_uid, contours.referenced_series_uid
    else:
        from voxsurv.data.ingest.dicom_seg import read_segment, segment_on_grid

        segment = read_segment(seg, roi, patient_id)
        name, frame, series_uid = segment.label, segment.frame_of_reference_uid, segment.referenced_series_uid
    series = scan_series(ct_dir)
    if series_uid and series_uid not in series:
        log.warning("%s references series %s, not found in %s: using the CT series there", label_path.name,
                    series_uid, ct_dir)
        series_uid = None
    image = read_ct_series(ct_dir, series_uid=series_uid, patient_id=patient_id, series=series)
    ct = pick_ct_series(series, ct_dir, series_uid, patient_id)
    ct_frame = str(ct.headers[0].get("FrameOfReferenceUID", "")) or None
    if frame and ct_frame and frame != ct_frame:
        raise InputError(f"ROI {name!r} is drawn in frame of reference {frame}, the CT is in {ct_frame}",
                         patient_id, label_path, "pair the RTSTRUCT/SEG with the CT it was drawn on")
    if rtstruct is not None:
        mask = rasterise(contours, image, patient_id, rtstruct)
    else:
        mask = segment_on_grid(segment, image, patient_id, seg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_path, mask_path = out_dir / "image.nii.gz", out_dir / "mask.nii.gz"
    sitk.WriteImage(image, str(image_path), useCompression=True)
    sitk.WriteImage(mask, str(mask_path), useCompression=True)
    voxels = int(sitk.GetArrayViewFromImage(mask).sum())
    volume_ml = voxels * float(np.prod(image.GetSpacing())) / 1000.0
    log.info("patient %s: ROI %r -> %d voxels (%.1f ml) on %s grid, written to %s", patient_id or "-",
             name, voxels, volume_ml, image.GetSize(), out_dir)
    return Conversion(patient_id, name, image_path, mask_path, image.GetSize(), image.GetSpacing(),
                      voxels, volume_ml)


def convert_batch(manifest: str | Path, out_root: str | Path, roi: str | None = None,
                  passthrough: bool = True, on_patient=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Convert every patient of a CSV (``patient_id, ct_dir, rtstruct`` or ``seg`` [, ``roi``], paths relative
    to the CSV) into ``out_root/<patient_id>/``. A patient with bad input is recorded in the
    exclusions table and the run goes on.

    Writes ``out_root/converted.csv`` (a voxsurv manifest: ``patient_id, image, mask`` relative to
    ``out_root`` plus the other columns of the input, e.g. ``time_days, event, cohort``) and
    ``out_root/exclusions.csv`` (``patient_id, problem, path, fix, message``). Returns both tables.
    Each patient's folder is ``voxsurv.core.patient_folders.patient_folder_name(patient_id)`` (two ids
    never share one); ``on_patient(patient_id)`` is called after each patient (progress).
    """
    from voxsurv.core.patient_folders import patient_folder_name

    manifest = Path(manifest)
    if not manifest.is_file():
        raise InputError("conversion manifest not found", path=manifest, fix="check --manifest")
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    missing = [c for c in BATCH_COLUMNS if c not in table.columns]
    if not any(c in table.columns for c in LABEL_COLUMNS):
        missing.append("rtstruct (or seg)")
    if missing or ("roi" not in table.columns and not roi):
        need = missing + ([] if ("roi" in table.columns or roi) else ["roi (or --roi)"])
        raise InputError(f"conversion manifest lacks column(s): {', '.join(need)}", path=manifest,
                         fix="columns: patient_id, ct_dir, rtstruct or seg, roi (or pass --roi)")
    base = manifest.resolve().parent
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    done, excluded = [], []
    extra = [c for c in table.columns if c not in (*BATCH_COLUMNS, *LABEL_COLUMNS, "roi")] if passthrough else []
    for i, rec in enumerate(table.to_dict("records"), start=1):
        pid = rec["patient_id"].strip()
        pattern = (rec.get("roi") or "").strip() or roi
        log.info("[%d/%d] converting patient %s", i, len(table), pid)
        try:
            if not pid:
                raise InputError(f"row {i}: patient_id is empty", path=manifest, fix="fill patient_id")
            rs, sg = (rec.get(c, "").strip() for c in LABEL_COLUMNS)
            if bool(rs) == bool(sg):
                raise InputError(f"row {i}: give exactly one of rtstruct or seg", pid, manifest,
                                 "fill one of the two columns")
            res = convert_patient(base / rec["ct_dir"].strip(), (base / rs) if rs else None, pattern,
                                  out_root / patient_folder_name(pid), patient_id=pid, seg=(base / sg) if sg else None)
        except InputError as err:
            log.warning("excluded: %s", err)
            excluded.append({"patient_id": pid, "problem": err.problem, "path": err.path or "", "fix": err.fix or "",
                             "message": str(err)})
            if on_patient:
                on_patient(pid)
            continue
        if on_patient:
            on_patient(pid)
        row = {"patient_id": pid, "image": str(res.image_path.relative_to(out_root)),
               "mask": str(res.mask_path.relative_to(out_root)), "roi_name": res.roi_name,
               "mask_volume_ml": round(res.mask_volume_ml, 3)}
        row.update({c: rec[c] for c in extra})
        done.append(row)
    converted = pd.DataFrame(done, columns=["patient_id", "image", "mask", "roi_name", "mask_volume_ml", *extra])
    exclusions = pd.DataFrame(excluded, columns=list(EXCLUSION_COLUMNS))
    converted.to_csv(out_root / "converted.csv", index=False)
    exclusions.to_csv(out_root / "exclusions.csv", index=False)
    log.info("converted %d patient(s), excluded %d (see %s)", len(converted), len(exclusions),
             out_root / "exclusions.csv")
    return converted, exclusions
