"""MONAI Label InferTask for the voxsurv risk model.

It runs the inference bundle's own pipeline through ``voxsurv.inference.predictor.RiskPredictor``,
which parses the bundle's ``configs/inference.yaml`` (preprocessing, network, postprocessing by
name): the task copies no transform, so it follows whatever the bundle does.

MONAI Label sends one image per request; the survival model also needs the tumour. The task takes
it from the request (an uploaded ``label`` file, or ``params.label`` = a path on the server) or
else from the datastore (``labels/<tumour_label_tag>/<image id>``, tag ``final`` by default).

The label image it returns is the Grad-CAM heat map on the CT's grid: by default quantised into
five bands (1: (0, 20%], ..., 5: (80%, 100%] of the patient's maximum; 0 = no attention), which a
label viewer such as 3D Slicer shows as named segments (``label_names`` in the result); with
``params.heatmap = "float"`` the float map itself (identical to `voxsurv predict`'s gradcam.nii.gz).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from fastapi import HTTPException
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

logger = logging.getLogger(__name__)

N_BANDS = 5
BAND_NAMES = {f"Grad-CAM {100 * (b - 1) // N_BANDS}-{100 * b // N_BANDS}%": b for b in range(1, N_BANDS + 1)}


def bad_input(message: str) -> HTTPException:
    """A 400 answer whose body carries the message: MONAI Label turns any other exception of a task
    into a bare "Internal Server Error", leaving the client without the reason."""
    logger.error("bad input: %s", message)
    return HTTPException(status_code=400, detail=message)


def heatmap_bands(cam):
    """Float Grad-CAM in [0, 1] -> uint8 bands 0..N_BANDS: band b holds ((b-1)/N, b/N]; 0 stays 0."""
    import numpy as np

    cam = np.clip(np.nan_to_num(np.asarray(cam, dtype=np.float64)), 0.0, 1.0)
    return np.ceil(cam * N_BANDS).astype(np.uint8)


class RiskInferTask(InferTask):
    """CT + tumour label -> Grad-CAM label image + risk, tier, S(t), model version, weights hash.

    Args:
        bundle: the inference bundle folder (configs/inference.yaml, models/).
        datastore: the app's ``datastore`` method (the tumour label is looked up there).
        device: torch device for the network.
    """

    def __init__(self, bundle: str | Path, datastore: Callable | None = None, device: str = "cpu") -> None:
        super().__init__(
            type=InferType.OTHERS,
            labels=BAND_NAMES,
            dimension=3,
            description="Overall-survival risk (Cox log relative hazard), risk tier and S(t) at 1/2/3 years from "
                        "the CT and its tumour label (labels/final); label image = Grad-CAM heat map bands",
            config={"tumour_label_tag": "final", "heatmap": "bands"},
        )
        self.bundle = Path(bundle)
        self.datastore = datastore
        self.device = device
        self._predictor = None
        self._lock = threading.Lock()

    def is_valid(self) -> bool:
        return (self.bundle / "configs" / "inference.yaml").is_file() and (self.bundle / "models" / "model.pt").is_file()

    def predictor(self):
        """The bundle, parsed and loaded once (first request)."""
        with self._lock:
            if self._predictor is None:
                from voxsurv.inference.predictor import RiskPredictor

                self._predictor = RiskPredictor(self.bundle, device=self.device)
            return self._predictor

    def tumour_label(self, request: dict) -> str:
        """Path of the tumour label: request ``label`` (upload or path), else the datastore's."""
        label = request.get("label")
        if isinstance(label, str) and label:
            if not os.path.isfile(label):
                raise bad_input(f"tumour label {label} not found on the server")
            return label
        image_id = request.get("image_id") or request.get("image")
        tag = request.get("tumour_label_tag") or "final"
        store = self.datastore() if self.datastore else None
        label_id = store.get_label_by_image_id(image_id, tag) if store is not None else None
        if not label_id:
            raise bad_input(f"image {image_id}: no tumour label (labels/{tag}/ in the datastore is empty for it); "
                            "save the tumour contour as its final label, or send it as `label` with the request")
        return store.get_label_uri(label_id, tag)

    def __call__(self, request: dict) -> tuple[str, dict[str, Any]]:
        import SimpleITK as sitk

        from voxsurv.core.errors import InputError

        image = request.get("image")
        if not isinstance(image, str) or not os.path.isfile(image):
            raise bad_input(f"image {image!r} is not a file (this task reads NIfTI/NRRD CTs)")
        mask = self.tumour_label(request)
        patient = str(request.get("image_id") or Path(image).name)
        work = Path(tempfile.mkdtemp(prefix="voxsurv_label_"))
        try:
            try:
                report = self.predictor().predict({"patient_id": patient, "image": image, "mask": mask}, work)
            except InputError as err:
                raise bad_input(str(err)) from err
            cams = sorted(work.rglob("gradcam.nii.gz"))  # the predictor's Grad-CAM on the CT grid
            if len(cams) != 1:
                raise RuntimeError(f"expected one gradcam.nii.gz from the predictor in {work}, found {len(cams)}")
            cam = sitk.ReadImage(str(cams[0]))
            fmt = str(request.get("heatmap", "bands"))
            if fmt == "float":
                out_img = cam
            elif fmt == "bands":
                out_img = sitk.GetImageFromArray(heatmap_bands(sitk.GetArrayFromImage(cam)))
                out_img.CopyInformation(cam)
            else:
                raise bad_input(f"heatmap must be 'bands' or 'float', not {fmt!r}")
            fd, out = tempfile.mkstemp(suffix=".nii.gz", prefix="voxsurv_gradcam_")
            os.close(fd)
            sitk.WriteImage(out_img, out, useCompression=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        model = report["model"]
        result = {
            "risk": report["risk"],
            "risk_definition": report.get("risk_definition", ""),
            "tier": report["tier"],
            "tier_cutoffs": report["tier_cutoffs"],
            "survival": report["survival"],
            "survival_note": report.get("survival_note", ""),
            "model_version": model["version"],
            "weights_sha256": model["weights_sha256"],
            "calibration_applies": report.get("calibration_applies"),
            "n_slices": report.get("n_slices"),
            "tumour_label": Path(mask).name,
            "heatmap": fmt,
            "label_names": BAND_NAMES if fmt == "bands" else {},
            "heatmap_note": (report.get("outputs") or {}).get("gradcam_note", ""),
            "intended_use": report.get("intended_use", "Research only; not for clinical decisions."),
        }
        logger.info("image %s: risk %.4f (%s)", patient, result["risk"], result["tier"])
        return out, result
