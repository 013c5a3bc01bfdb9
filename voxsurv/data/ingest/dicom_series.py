"""Reading a planning CT from a DICOM folder: pick the CT series, sort its slices along the
slice normal, refuse geometry that a voxel grid cannot represent (gantry tilt, irregular or
missing slices, mixed orientations), then let SimpleITK read the pixels with rescale
slope/intercept applied (HU)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from voxsurv.core.errors import InputError

log = logging.getLogger(__name__)

#: Slice-spacing tolerance: absolute (mm) and relative to the median spacing; the larger applies.
SPACING_ATOL_MM = 0.01
SPACING_RTOL = 0.01
#: In-plane drift of successive slice positions beyond which the stack is sheared (gantry tilt).
TILT_TOL_MM = 0.01


@dataclass
class SeriesInfo:
    """Headers of one DICOM series found in a folder."""

    uid: str
    modality: str
    files: list[Path] = field(default_factory=list)
    headers: list[pydicom.Dataset] = field(default_factory=list)


def scan_series(folder: str | Path) -> dict[str, SeriesInfo]:
    """All DICOM image series under ``folder`` (recursively), by SeriesInstanceUID; headers only."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("CT folder not found", path=folder, fix="check --ct-dir")
    series: dict[str, SeriesInfo] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError):
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        if not uid:
            continue
        info = series.setdefault(uid, SeriesInfo(uid=uid, modality=str(ds.get("Modality", "?"))))
        info.files.append(path)
        info.headers.append(ds)
    return series


def _describe(series: dict[str, SeriesInfo]) -> str:
    if not series:
        return "no DICOM files"
    return "; ".join(f"{s.modality} series {s.uid} ({len(s.files)} files)" for s in series.values())


def pick_ct_series(series: dict[str, SeriesInfo], folder: str | Path, series_uid: str | None = None,
                   patient_id: str | None = None) -> SeriesInfo:
    """The CT series to convert: ``series_uid`` when given (e.g. referenced by the RTSTRUCT),
    else the only CT series, else the CT series with most slices (logged)."""
    cts = {uid: s for uid, s in series.items() if s.modality == "CT"}
    if not cts:
        raise InputError(f"no CT series found (found: {_describe(series)})", patient_id, folder,
                         "point --ct-dir at the planning CT; only CT modality is supported")
    if series_uid:
        if series_uid in cts:
            return cts[series_uid]
        if series_uid in series:
            raise InputError(f"the referenced series {series_uid} has modality {series[series_uid].modality}, not CT",
                             patient_id, folder, "convert a structure set drawn on a CT")
        raise InputError(f"the RTSTRUCT's referenced CT series {series_uid} is not in the folder "
                         f"(found: {_describe(series)})", patient_id, folder,
                         "put the CT series the RTSTRUCT was drawn on in --ct-dir")
    if len(cts) > 1:
        chosen = max(cts.values(), key=lambda s: len(s.files))
        log.warning("%s CT series in %s; using the one with most slices (%d)", len(cts), folder, len(chosen.files))
        return chosen
    return next(iter(cts.values()))


def sorted_slices(info: SeriesInfo, folder: str | Path, patient_id: str | None = None
                  ) -> tuple[list[Path], float, np.ndarray]:
    """Files sorted along the slice normal, the slice spacing (mm) and the 3x3 direction matrix
    (columns: row direction, column direction, normal). Raises InputError for geometry a regular
    grid cannot hold."""
    def bad(problem: str, fix: str) -> InputError:
        return InputError(problem, patient_id, folder, fix)

    hdrs = info.headers
    missing = [str(f.name) for f, h in zip(info.files, hdrs)
               if "ImagePositionPatient" not in h or "ImageOrientationPatient" not in h]
    if missing:
        raise bad(f"CT slices without ImagePositionPatient/ImageOrientationPatient: {', '.join(missing[:3])}",
                  "export the CT with full geometry headers")
    if len(hdrs) < 2:
        raise bad(f"CT series has {len(hdrs)} slice; a volume needs at least 2", "export the whole CT series")
    orient = np.array([[float(v) for v in h.ImageOrientationPatient] for h in hdrs])
    if np.abs(orient - orient[0]).max() > 1e-4:
        raise bad("CT slices have different orientations", "export one consistent axial series")
    row, col = orient[0, :3], orient[0, 3:]
    normal = np.cross(row, col)
    tilts = [abs(float(h.get("GantryDetectorTilt", 0) or 0)) for h in hdrs]
    if max(tilts) > 1e-3:
        raise bad(f"gantry tilt of {max(tilts):g} degrees: slices are sheared, not a regular grid",
                  "resample the CT to an untilted grid (e.g. in the planning system) before converting")
    shapes = {(int(h.Rows), int(h.Columns)) for h in hdrs}
    spacings = {tuple(round(float(v), 5) for v in h.PixelSpacing) for h in hdrs}
    if len(shapes) > 1 or len(spacings) > 1:
        raise bad(f"CT slices differ in size {sorted(shapes)} or pixel spacing {sorted(spacings)}",
                  "export one consistent series")

    pos = np.array([[float(v) for v in h.ImagePositionPatient] for h in hdrs])
    proj = pos @ normal
    order = np.argsort(proj, kind="stable")
    pos, proj = pos[order], proj[order]
    files = [info.files[i] for i in order]
    steps = np.diff(proj)
    if np.any(steps < SPACING_ATOL_MM):
        i = int(np.argmin(steps))
        raise bad(f"two CT slices at the same position ({proj[i]:.2f} mm: {files[i].name}, {files[i + 1].name})",
                  "remove duplicate slices or split the series")
    drift = (pos - pos[0]) - np.outer(proj - proj[0], normal)
    if np.abs(drift).max() > TILT_TOL_MM:
        raise bad(f"slice positions drift {np.abs(drift).max():.2f} mm in-plane along the stack (gantry tilt)",
                  "resample the CT to an untilted grid before converting")
    dz = float(np.median(steps))
    tol = max(SPACING_ATOL_MM, SPACING_RTOL * dz)
    off = np.abs(steps - dz) > tol
    if off.any():
        i = int(np.argmax(off))
        ratio = steps[i] / dz
        if abs(ratio - round(ratio)) * dz <= tol and round(ratio) >= 2:
            problem = (f"missing slice(s): gap of {steps[i]:.2f} mm between {files[i].name} and {files[i + 1].name} "
                       f"where the series spacing is {dz:.2f} mm")
        else:
            found = sorted({round(float(s), 2) for s in steps})
            problem = f"irregular slice spacing: steps of {', '.join(f'{s:g}' for s in found)} mm along the series"
        raise bad(problem, "export the complete CT series with uniform slice spacing")
    direction = np.stack([row, col, normal], axis=1)
    return files, dz, direction


def read_ct_series(folder: str | Path, series_uid: str | None = None, patient_id: str | None = None,
                   series: dict[str, SeriesInfo] | None = None) -> sitk.Image:
    """The planning CT in ``folder`` as an int16 HU SimpleITK image with its DICOM geometry.

    Args:
        folder: folder holding the CT series (other files and series are ignored).
        series_uid: SeriesInstanceUID to use (e.g. the one the RTSTRUCT references).
        patient_id: named in errors.
        series: result of :func:`scan_series` when already scanned.
    """
    series = scan_series(folder) if series is None else series
    info = pick_ct_series(series, folder, series_uid, patient_id)
    files, dz, direction = sorted_slices(info, folder, patient_id)
    try:
        # Float read: GDCM applies each slice's RescaleSlope/RescaleIntercept.
        img = sitk.ReadImage([str(f) for f in files], sitk.sitkFloat32)
    except RuntimeError as exc:
        raise InputError("CT pixel data is unreadable", patient_id, folder,
                         "check the files are complete DICOM images") from exc
    first = info.headers[info.files.index(files[0])]
    origin = np.array([float(v) for v in first.ImagePositionPatient])
    ps = [float(v) for v in first.PixelSpacing]  # (row spacing, column spacing) = (y, x)
    # Geometry from our own header checks (SimpleITK's series reader can silently average spacing).
    img.SetOrigin(tuple(origin))
    img.SetSpacing((ps[1], ps[0], dz))
    img.SetDirection(tuple(direction.flatten()))
    arr = sitk.GetArrayViewFromImage(img)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -32768 or hi > 32767:
        raise InputError(f"CT values {lo:g}..{hi:g} do not fit int16 HU", patient_id, folder,
                         "check RescaleSlope/RescaleIntercept")
    hu = sitk.Cast(sitk.Round(img), sitk.sitkInt16)
    log.info("CT series: %d slices, %s voxels of %s mm, HU %g..%g", len(files), hu.GetSize(),
             tuple(round(s, 3) for s in hu.GetSpacing()), lo, hi)
    return hu
