"""`python deploy/voxsurv_app -i DICOM -o OUT -m bundles/inference` (also the MAP entry point)."""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app import VoxsurvRiskApp  # noqa: E402

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    VoxsurvRiskApp().run()
