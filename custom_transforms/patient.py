"""Patient identity in a sample dict: every error and every prediction row names the patient, so
a sample that arrives without ``patient_id`` (one file pair from MONAI Deploy or Label) gets one
from its image file name."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["PatientIdd", "PatientIdD", "PatientIdDict", "patient_id_from_filename"]

_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".npy", ".npz")


def patient_id_from_filename(path: str) -> str:
    """File name without folder and image extension ("lung1-002_ct.nii.gz" -> "lung1-002_ct")."""
    name = os.path.basename(str(path))
    for ext in _EXTENSIONS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


class PatientIdd(MapTransform):
    """Sets ``d[patient_id_key]`` when missing or empty: from the ``patient_id`` in the meta of
    ``keys[0]``, else from its ``filename_or_obj`` (file name without extension). A present id is
    kept as it is (converted to str).

    Args:
        keys: the key whose meta names the patient (e.g. the image).
        patient_id_key: where the id is read and written.
        allow_missing_keys: leave the dict alone when the key is absent.
    """

    def __init__(self, keys: KeysCollection, patient_id_key: str = "patient_id",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.patient_id_key = patient_id_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        if d.get(self.patient_id_key) not in (None, ""):
            d[self.patient_id_key] = str(d[self.patient_id_key])
            return d
        for key in self.key_iterator(d):
            meta = getattr(d[key], "meta", None) or {}
            if meta.get("patient_id"):
                d[self.patient_id_key] = str(meta["patient_id"])
            elif meta.get("filename_or_obj"):
                d[self.patient_id_key] = patient_id_from_filename(meta["filename_or_obj"])
            elif isinstance(d[key], str):
                d[self.patient_id_key] = patient_id_from_filename(d[key])
            break
        return d


PatientIdD = PatientIdDict = PatientIdd
