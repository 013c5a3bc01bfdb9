"""NIfTI / NRRD volumes and the checks every patient's image + mask must pass before training:
readable, 3D, mask on the image's grid, mask not empty. Each failure is an InputError naming the
patient, the file and the fix, so batch jobs can record an exclusion and go on."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from voxsurv.core.errors import InputError

log = logging.getLogger(__name__)

#: Geometry tolerances for "same grid": mm for origin, relative for spacing, absolute for direction.
ORIGIN_TOL_MM = 1e-3
SPACING_RTOL = 1e-4
DIRECTION_TOL = 1e-4


def _nifti_truncation(path: Path) -> str | None:
    """ITK's NIfTI reader fills a truncated file's missing voxels silently; check the byte count
    (header offset + voxels x bytes) against the (decompressed) file. None when complete."""
    import gzip
    import zlib

    import nibabel as nib

    try:
        hdr = nib.load(str(path)).header
    except Exception as exc:  # noqa: BLE001 - any header failure means unreadable
        return f"header unreadable ({type(exc).__name__})"
    need = int(hdr.get_data_offset()) + int(np.prod(hdr.get_data_shape())) * hdr.get_data_dtype().itemsize
    if str(path).endswith(".gz"):
        have = 0
        try:
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    have += len(chunk)
        except (EOFError, OSError, zlib.error) as exc:
            return f"compressed stream ends early ({type(exc).__name__})"
    else:
        have = path.stat().st_size
    return None if have >= need else f"{have} of {need} bytes"


def read_volume(path: str | Path, patient_id: str | None = None, what: str = "image") -> sitk.Image:
    """Read a 3D volume (NIfTI, NRRD or anything SimpleITK reads); InputError when the file is
    missing, unreadable/truncated or not 3D."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found", patient_id, path, "check the path in the manifest")
    unreadable = InputError(f"{what} file is unreadable (truncated or corrupt)", patient_id, path,
                            "re-export or re-download the file")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        truncated = _nifti_truncation(path)
        if truncated:
            log.debug("%s is truncated: %s", path, truncated)
            raise unreadable
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        log.debug("SimpleITK could not read %s: %s", path, exc)
        raise unreadable from exc
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{what} is not a 3D single-channel volume (dimension {img.GetDimension()}, "
                         f"{img.GetNumberOfComponentsPerPixel()} components)", patient_id, path,
                         "give one 3D scalar volume per file")
    return img


def same_grid_problem(image: sitk.Image, mask: sitk.Image) -> str | None:
    """None when ``mask`` lies on ``image``'s voxel grid, else what differs (for the message)."""
    if image.GetSize() != mask.GetSize():
        return f"size {mask.GetSize()} vs image {image.GetSize()}"
    if not np.allclose(mask.GetSpacing(), image.GetSpacing(), rtol=SPACING_RTOL, atol=0):
        return (f"spacing {tuple(round(s, 4) for s in mask.GetSpacing())} mm vs image "
                f"{tuple(round(s, 4) for s in image.GetSpacing())} mm")
    if not np.allclose(mask.GetOrigin(), image.GetOrigin(), rtol=0, atol=ORIGIN_TOL_MM):
        return (f"origin {tuple(round(o, 3) for o in mask.GetOrigin())} mm vs image "
                f"{tuple(round(o, 3) for o in image.GetOrigin())} mm")
    if not np.allclose(mask.GetDirection(), image.GetDirection(), rtol=0, atol=DIRECTION_TOL):
        return "direction cosines differ from the image's"
    return None


def check_image_mask(image_path: str | Path, mask_path: str | Path,
                     patient_id: str | None = None) -> tuple[sitk.Image, sitk.Image]:
    """Read one patient's image and mask and check them; returns both (SimpleITK images).

    Raises InputError naming the patient for: missing/unreadable/truncated file, not 3D, mask on
    another grid than the image, empty mask (no voxel > 0).
    """
    image = read_volume(image_path, patient_id, "image")
    mask = read_volume(mask_path, patient_id, "mask")
    problem = same_grid_problem(image, mask)
    if problem:
        raise InputError(f"mask is on a different grid than the image: {problem}", patient_id, mask_path,
                         "resample the mask onto the image grid (nearest neighbour) or re-export both")
    if not np.any(sitk.GetArrayViewFromImage(mask) > 0):
        raise InputError("mask is empty (no voxel > 0)", patient_id, mask_path,
                         "re-export the tumour contour or exclude this patient")
    return image, mask


def check_record(record) -> tuple[sitk.Image, sitk.Image]:
    """:func:`check_image_mask` for one manifest row (mapping with patient_id, image, mask)."""
    return check_image_mask(record["image"], record["mask"], str(record["patient_id"]))


def to_metatensor(img: sitk.Image, filename: str | Path | None = None):
    """A SimpleITK volume as MONAI would load it: channel-first (1, x, y, z) float32 MetaTensor
    with a RAS affine (MONAI's ``LoadImage`` convention), so NRRD and checked images enter the
    same transforms as NIfTI loaded by ``LoadImaged``."""
    import torch
    from monai.data import MetaTensor

    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)[None].astype(np.float32)  # (1, x, y, z)
    affine = np.eye(4)
    affine[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
    affine[:3, 3] = img.GetOrigin()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # LPS (ITK) -> RAS (MONAI)
    meta = {"filename_or_obj": str(filename) if filename else "", "space": "RAS",
            "original_affine": affine.copy(), "spatial_shape": np.array(arr.shape[1:])}
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(arr)), affine=torch.as_tensor(affine), meta=meta)
