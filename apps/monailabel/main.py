"""MONAI Label app serving the voxsurv inference bundle: CT + tumour label -> Grad-CAM heat map
(returned as the label image) and risk, tier, S(t) at 1/2/3 years, model version and weights hash
(returned in the result JSON).

Start (in the Label venv made by scripts/setup_label_env.sh):
    .venv-label/bin/python -m monailabel.main start_server --app apps/monailabel \
        --studies STUDIES --host 127.0.0.1 --port 8000 [--conf bundle PATH]

STUDIES holds the CTs (NIfTI) and, under labels/final/, each CT's tumour label of the same name.
`--conf bundle` is the inference bundle folder (default: the repository's bundles/inference).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from monailabel.interfaces.app import MONAILabelApp

from lib.infers.voxsurv_risk import RiskInferTask

logger = logging.getLogger(__name__)

#: the repository's inference bundle, when the app runs from its place in the repository
DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "inference"


class VoxsurvRiskApp(MONAILabelApp):
    """One inference task, ``voxsurv_risk`` (type ``others``: no segmentation, no training)."""

    def __init__(self, app_dir: str, studies: str, conf: dict) -> None:
        import voxsurv

        self.bundle = Path(conf.get("bundle") or DEFAULT_BUNDLE).resolve()
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="voxsurv - overall-survival risk from CT + tumour label",
            description="Vision-Mamba Cox model on CT + voxel radiomics maps (research use only; not for "
                        "clinical decisions): Grad-CAM heat map as the label, risk / tier / S(t) in the result",
            version=getattr(voxsurv, "__version__", "unknown"),
        )

    def init_infers(self):
        task = RiskInferTask(self.bundle, datastore=self.datastore,
                             device=self.conf.get("device", "cpu"))
        logger.info("+++ Adding inferer voxsurv_risk (bundle %s)", self.bundle)
        return {"voxsurv_risk": task}

    def init_strategies(self):
        return {}  # nothing to annotate: the tumour label is an input, not a task of this app

    def infer(self, request, datastore=None):
        # MONAILabelApp.infer replaces request["image"] (a datastore id) by its file path; keep the
        # id, so the task can look the tumour label up in the datastore (labels/final/<id>).
        request = dict(request)
        request.setdefault("image_id", request.get("image"))
        return super().infer(request, datastore)
