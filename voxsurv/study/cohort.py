"""Who is in the study and in which role, the source folds every model shares, and the manifests
(manifest rows + a `split` column) the study hands to the bundles.

Why the study writes the manifests: every model of the comparison must see exactly the patients
of the split file (docs/results/real_split.csv) in their roles, and every out-of-fold number
(deep runs, the volume + HU Cox) must use the SAME source folds. A bundle run reads its roles
from the `split` column (train / val / test) of the manifest it is given, nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from voxsurv.study.split import ROLES, read_split, study_table

#: Patients per role in the smoke study (half deaths where possible).
SMOKE_PATIENTS = {"source": 10, "finetune": 4, "test": 8}
MANIFEST_COLUMNS = ("patient_id", "cohort", "image", "mask", "time_days", "event")


def smoke_subset(split: pd.DataFrame, manifest: pd.DataFrame, counts: dict | None = None) -> pd.DataFrame:
    """A few patients per role, the same roles as the split file: the first deaths and censored
    patients in file order (deterministic), half of each where the role has them."""
    counts = counts or SMOKE_PATIENTS
    parts = []
    for role in ROLES:
        r = split[split.role == role].merge(manifest[["patient_id", "event"]], on="patient_id")
        n = counts[role]
        ev, ce = r[r.event == 1].head(n // 2), r[r.event == 0].head(n - n // 2)
        parts.append(pd.concat([ev, ce])[split.columns])
    return pd.concat(parts, ignore_index=True)


class StudyCohort:
    """The study's patients: manifest rows joined with their role, and the source folds.

    Args:
        data_dir: folder with manifest.csv (lung_crops).
        split_file: the study's split file.
        out_dir: where split_used.csv, source_folds.csv and manifests/ are written.
        n_folds, seed: event-stratified source folds (voxsurv.training.folds), shared by every
            out-of-fold estimate of the study.
        smoke: restrict to SMOKE_PATIENTS per role.
    """

    def __init__(self, data_dir: str | Path, split_file: str | Path, out_dir: str | Path, n_folds: int = 5,
                 seed: int = 0, smoke: bool = False) -> None:
        from voxsurv.data.manifest import load_manifest
        from voxsurv.training.folds import stratified_patient_folds

        self.data_dir, self.out = Path(data_dir), Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        manifest = load_manifest(self.data_dir / "manifest.csv")
        split = read_split(split_file)
        if smoke:
            split = smoke_subset(split, manifest)
        self.split = split.reset_index(drop=True)
        self.split.to_csv(self.out / "split_used.csv", index=False)
        self.table = study_table(manifest, self.split)
        self.role = {r: self.table[self.table.role == r].reset_index(drop=True) for r in ROLES}
        src = self.role["source"]
        self.n_folds = n_folds
        self.folds = pd.DataFrame({"patient_id": src.patient_id,
                                   "fold": stratified_patient_folds(src.event.to_numpy(), n_folds, seed)})
        self.folds.to_csv(self.out / "source_folds.csv", index=False)

    # ---- roles ----
    def patients(self, *roles: str) -> pd.DataFrame:
        """Manifest rows of the given roles (in that order)."""
        return pd.concat([self.role[r] for r in roles], ignore_index=True)

    def fold_of(self) -> dict[str, int]:
        return dict(zip(self.folds.patient_id, self.folds.fold))

    def source_fold(self, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(training, validation) source rows of fold k."""
        src = self.role["source"]
        f = src.patient_id.map(self.fold_of())
        return src[f != k].reset_index(drop=True), src[f == k].reset_index(drop=True)

    def records(self) -> list[dict]:
        """patient_id, image, mask of every study patient (the maps step's input)."""
        return self.table[["patient_id", "image", "mask"]].to_dict("records")

    # ---- manifests for the bundles ----
    def write_manifest(self, name: str, splits: dict[str, pd.DataFrame]) -> str:
        """manifests/<name>.csv: the rows of each frame in `splits` with `split` = its key
        (train / val / test); clinical columns kept. Written once; an existing file must be equal
        (a re-run of the study never changes a manifest a finished run used)."""
        rows = []
        for split, df in splits.items():
            if len(df):
                rows.append(df.drop(columns=["role"], errors="ignore").assign(split=split))
        out = pd.concat(rows, ignore_index=True)
        dup = out.patient_id[out.patient_id.duplicated()].tolist()
        if dup:
            raise ValueError(f"manifest {name}: patients in two splits: {dup[:5]}")
        path = self.out / "manifests" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = out.to_csv(index=False)
        if path.is_file() and path.read_text() != text:
            raise RuntimeError(f"{path} exists with other rows; the study's patients changed since it was "
                               "written. Use a new --out folder (nothing is overwritten silently).")
        path.write_text(text)
        return str(path)

    def fold_manifest(self, k: int) -> str:
        train, val = self.source_fold(k)
        return self.write_manifest(f"source_fold{k}", {"train": train, "val": val})

    def summary(self) -> dict:
        return {"patients": {r: int(len(d)) for r, d in self.role.items()},
                "events": {r: int(d.event.sum()) for r, d in self.role.items()},
                "source_folds": {int(k): {"patients": int((self.folds.fold == k).sum()),
                                          "events": int(self.role["source"].event[self.folds.fold.to_numpy() == k].sum())}
                                 for k in range(self.n_folds)}}

