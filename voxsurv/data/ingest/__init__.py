"""Getting patients' CT and tumour masks into voxsurv: NIfTI/NRRD volumes with their checks, and
DICOM CT series + RTSTRUCT conversion. Lower layer: imports nothing from transforms or training."""

from voxsurv.data.ingest.volumes import check_image_mask, check_record, read_volume, same_grid_problem

__all__ = ["check_image_mask", "check_record", "read_volume", "same_grid_problem"]
