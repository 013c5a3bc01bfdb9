"""DICOM SEG (optional input instead of an RTSTRUCT): the segment whose label matches a pattern,
read with highdicom and placed on the CT grid (nearest neighbour; exact when the SEG frames lie
on the CT's slices, as for a SEG made from that CT)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from voxsurv.core.errors import InputError
from voxsurv.data.ingest.structure_name import match_structure

log = logging.getLogger(__name__)


@dataclass
class SegSegment:
    """One segment of a SEG file as a SimpleITK image on the SEG's own grid."""

    label: str
    number: int
    image: sitk.Image
    frame_of_reference_uid: str | None
    referenced_series_uid: str | None


def read_segment(path: str | Path, pattern: str, patient_id: str | None = None) -> SegSegment:
    """The one segment whose label matches ``pattern`` (case-insensitive regex; a whole-label
    match wins among several). InputError listing the labels present when none or several match."""
    import highdicom as hd

    path = Path(path)
    if not path.is_file():
        raise InputError("SEG file not found", patient_id, path, "check --seg")
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # noqa: BLE001 - highdicom raises several types for non-SEG input
        raise InputError(f"file is not a readable DICOM SEG ({type(exc).__name__})", patient_id, path,
                         "give the segmentation (SEG) file") from exc
    segments = [(int(d.SegmentNumber), str(d.SegmentLabel)) for d in seg.SegmentSequence]
    number, label = segments[match_structure([lab for _, lab in segments], pattern, "segment", "labels",
                                             patient_id, path)]
    vol = seg.get_volume(segment_numbers=[number], combine_segments=True)
    arr = (np.asarray(vol.array) > 0).astype(np.uint8)  # axes (i, j, k) of vol.affine
    affine = np.asarray(vol.affine, dtype=np.float64)
    # SimpleITK index (x, y, z) = array axes reversed (k, j, i): its direction columns follow.
    cols = [affine[:3, 2], affine[:3, 1], affine[:3, 0]]
    spacing = [float(np.linalg.norm(c)) for c in cols]
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    img.SetDirection(tuple(np.stack([c / s for c, s in zip(cols, spacing)], axis=1).flatten()))
    series = None
    for ref in seg.get("ReferencedSeriesSequence", []):
        series = str(ref.SeriesInstanceUID)
        break
    return SegSegment(label, number, img, str(seg.get("FrameOfReferenceUID", "")) or None, series)


def segment_on_grid(segment: SegSegment, reference: sitk.Image, patient_id: str | None = None,
                    path: str | Path | None = None) -> sitk.Image:
    """uint8 mask of ``segment`` on ``reference``'s grid (nearest neighbour)."""
    mask = sitk.Resample(segment.image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(mask).any():
        raise InputError(f"segment {segment.label!r} is empty on the CT grid", patient_id, path,
                         "check that the SEG belongs to this CT series")
    return mask
