"""RTSTRUCT contours -> voxel mask on the CT grid.

pydicom reads the structure set; each closed planar contour is mapped to the CT's continuous
voxel indices and filled with ``skimage.draw.polygon`` (pixel centres inside the polygon).
Contours on the same slice are combined by exclusive OR, so a contour drawn inside another is a
hole (the even-odd rule planning systems use for rings and cavities)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from skimage.draw import polygon

from voxsurv.core.errors import InputError
from voxsurv.data.ingest.structure_name import match_structure

log = logging.getLogger(__name__)

#: A contour further than this fraction of a slice from a CT slice centre is reported.
OFF_SLICE_TOL = 0.25


@dataclass
class RoiContours:
    """One ROI of a structure set: its name, number and contours ((N, 3) mm arrays)."""

    name: str
    number: int
    contours: list[np.ndarray]
    geometric_types: list[str]
    frame_of_reference_uid: str | None
    referenced_series_uid: str | None


def read_rtstruct(path: str | Path, patient_id: str | None = None) -> pydicom.Dataset:
    """The structure set (pydicom); InputError if unreadable or not an RTSTRUCT."""
    path = Path(path)
    if not path.is_file():
        raise InputError("RTSTRUCT file not found", patient_id, path, "check --rtstruct")
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError) as exc:
        raise InputError("RTSTRUCT file is not readable DICOM", patient_id, path,
                         "give the structure set's .dcm file") from exc
    modality = str(ds.get("Modality", "?"))
    if modality != "RTSTRUCT" or "StructureSetROISequence" not in ds:
        raise InputError(f"file is not an RTSTRUCT (modality {modality})", patient_id, path,
                         "give the structure set (RTSTRUCT) file")
    return ds


def roi_names(ds: pydicom.Dataset) -> list[str]:
    """Names of the ROIs in the structure set, in file order."""
    return [str(r.ROIName) for r in ds.StructureSetROISequence]


def _referenced_series(ds: pydicom.Dataset) -> str | None:
    for fr in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in fr.get("RTReferencedStudySequence", []):
            for ser in study.get("RTReferencedSeriesSequence", []):
                if "SeriesInstanceUID" in ser:
                    return str(ser.SeriesInstanceUID)
    return None


def select_roi(ds: pydicom.Dataset, pattern: str, patient_id: str | None = None,
               path: str | Path | None = None) -> RoiContours:
    """The one ROI whose name matches ``pattern`` (case-insensitive regular expression, searched
    anywhere in the name; when several match, a name matching it entirely wins). InputError
    listing the ROI names present when none or several match."""
    roi = ds.StructureSetROISequence[match_structure(roi_names(ds), pattern, "ROI", "names", patient_id, path)]
    number = int(roi.ROINumber)
    contours, types = [], []
    for rc in ds.get("ROIContourSequence", []):
        if int(rc.ReferencedROINumber) != number:
            continue
        for c in rc.get("ContourSequence", []):
            pts = np.asarray([float(v) for v in c.ContourData], dtype=np.float64).reshape(-1, 3)
            contours.append(pts)
            types.append(str(c.get("ContourGeometricType", "CLOSED_PLANAR")))
    if not contours:
        raise InputError(f"ROI {str(roi.ROIName)!r} has no contours", patient_id, path,
                         "choose an ROI that was drawn, or re-export the structure set")
    return RoiContours(name=str(roi.ROIName), number=number, contours=contours, geometric_types=types,
                       frame_of_reference_uid=str(roi.get("ReferencedFrameOfReferenceUID", "")) or None,
                       referenced_series_uid=_referenced_series(ds))


def rasterise(roi: RoiContours, reference: sitk.Image, patient_id: str | None = None,
              path: str | Path | None = None) -> sitk.Image:
    """uint8 mask of ``roi`` on ``reference``'s grid (1 inside, 0 outside), holes by XOR."""
    size = reference.GetSize()  # (x, y, z)
    spacing = np.array(reference.GetSpacing())
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    origin = np.array(reference.GetOrigin())
    to_index = np.linalg.inv(direction @ np.diag(spacing))
    mask = np.zeros((size[2], size[1], size[0]), dtype=bool)  # (z, y, x) like SimpleITK arrays
    skipped, outside, off = 0, 0, 0.0
    for pts, kind in zip(roi.contours, roi.geometric_types):
        if kind != "CLOSED_PLANAR" or len(pts) < 3:
            skipped += 1
            continue
        idx = (pts - origin) @ to_index.T  # continuous (x, y, z) indices
        kz = idx[:, 2].mean()
        k = int(np.floor(kz + 0.5))
        off = max(off, abs(kz - k), float(np.ptp(idx[:, 2])))
        if not 0 <= k < size[2]:
            outside += 1
            continue
        rr, cc = polygon(idx[:, 1], idx[:, 0], shape=(size[1], size[0]))
        layer = np.zeros((size[1], size[0]), dtype=bool)
        layer[rr, cc] = True
        mask[k] ^= layer
    if skipped:
        log.warning("ROI %r: skipped %d contour(s) that are not closed planar polygons", roi.name, skipped)
    if outside:
        raise InputError(f"ROI {roi.name!r}: {outside} contour(s) lie outside the CT volume", patient_id, path,
                         "check that the RTSTRUCT belongs to this CT series")
    if off > OFF_SLICE_TOL:
        raise InputError(f"ROI {roi.name!r}: contours lie up to {off:.2f} slices away from CT slice centres",
                         patient_id, path, "check that the RTSTRUCT was drawn on this CT series")
    if not mask.any():
        raise InputError(f"ROI {roi.name!r} rasterises to an empty mask", patient_id, path,
                         "check the contours (too small for the voxel grid?)")
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(reference)
    return out
