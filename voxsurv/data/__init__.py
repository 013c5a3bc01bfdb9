"""Patients in: cohort manifests (manifest: one validated CSV row per patient) and the ingestion of
CT + tumour masks (ingest: NIfTI/NRRD checks, DICOM CT series, RTSTRUCT and DICOM SEG conversion).
Above voxsurv.core; below training, inference, the study and the commands, which all read patients
through it."""
