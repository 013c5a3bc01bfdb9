"""Vision-Mamba runs of the study (rows c-f): per-patient tumour slices from the maps cache, and a
plain PyTorch training loop with the project's pieces (networks.VisionMambaSurv,
survival.cox_loss.CoxPartialLikelihoodLoss, voxsurv.training.sampler.EventBatchSampler, the
bundles' augmentation and slice preprocessing), so every deep row runs in this one process tree.

Why not the bundles' ConfigWorkflow: the bundles compute maps inside their own PersistentDataset
cache; the study reuses the cohort maps cache it already screened on (`voxsurv maps`), and needs
the exact split file for every row. Settings mirror bundles/*/configs/train.yaml (64 mm / 64 px
crops, embed 64, depth 4, AdamW + cosine schedule, batch 16, flip/rotate/zoom, mean slice risk).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

PIXDIM = (1.0, 1.0, 5.0)


# ---- data -----------------------------------------------------------------------------------
def patient_volume(image_path: str, mask_path: str, patient_id: str, maps_file: str | None,
                   features: list[str]) -> dict:
    """CT (HU) and mask resampled to the maps grid (voxelmaps.cohort.resample_to_spacing: the grid
    of the cache), plus the chosen cached maps on the full grid; arrays (z, y, x)."""
    import SimpleITK as sitk

    from voxelmaps.cohort import load_patient_maps, resample_to_spacing
    from voxsurv.ingest.volumes import check_image_mask

    image, mask = check_image_mask(image_path, mask_path, patient_id)
    image, mask = resample_to_spacing(image, mask, PIXDIM)
    ct = sitk.GetArrayFromImage(image).astype(np.float32)
    roi = (sitk.GetArrayFromImage(mask) > 0).astype(np.uint8)
    maps = np.zeros((0,) + ct.shape, np.float32)
    if features:
        d = load_patient_maps(maps_file, full_grid=True)
        if tuple(d["grid_shape_zyx"]) != ct.shape:
            raise RuntimeError(f"patient {patient_id}: cached maps grid {d['grid_shape_zyx']} != CT grid {ct.shape}")
        idx = [list(d["names"]).index(f) for f in features]
        maps = d["maps"][idx].astype(np.float32)
    return {"patient_id": patient_id, "ct": ct, "mask": roi, "maps": maps}


def _xyz(a: np.ndarray) -> torch.Tensor:
    """(C, z, y, x) numpy -> (C, x, y, z) MetaTensor with the 1 x 1 x 5 mm affine (MONAI layout)."""
    from monai.data import MetaTensor

    return MetaTensor(torch.as_tensor(np.ascontiguousarray(np.swapaxes(a, 1, 3))),
                      affine=torch.diag(torch.tensor([*PIXDIM, 1.0], dtype=torch.float64)))


def patient_slices(vol: dict, statistics, roi_size_mm: float = 64.0, img_size: int = 64,
                   min_area_mm2: float = 10.0) -> torch.Tensor:
    """(S, 1 + F, img_size, img_size) tumour slices: CT HU-windowed and z-scored inside the tumour
    (custom_transforms.HUWindowZScore), maps normalised with `statistics` (0 outside the ROI),
    cut by custom_transforms.TumourSlices (the bundles' settings) and resized."""
    import torch.nn.functional as F

    from custom_transforms import HUWindowZScore, TumourSlices

    mask = _xyz(vol["mask"][None].astype(np.float32))
    ct = HUWindowZScore(width=250, level=30, region="mask")(_xyz(vol["ct"][None]), mask)
    chans = [torch.as_tensor(np.asarray(ct))]
    if vol["maps"].shape[0]:
        z = statistics.apply(vol["maps"], vol["mask"], discretise=True, outside_value=0.0).astype(np.float32)
        chans.append(torch.as_tensor(np.asarray(_xyz(z))))
    stack = _xyz(np.zeros((1,) + vol["ct"].shape, np.float32))  # carrier of the affine
    stack = type(stack)(torch.cat(chans, 0), affine=stack.affine)
    slicer = TumourSlices(min_area_mm2=min_area_mm2, roi_size_mm=roi_size_mm)
    cuts = [torch.as_tensor(np.asarray(slicer.cut(stack, p))) for p in slicer.plan(mask)]
    if not cuts:
        return torch.zeros((0, stack.shape[0], img_size, img_size))
    x = torch.stack(cuts).float()
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    return x


class SliceSet:
    """Slices of a group of patients: inputs (N, C, H, W), labels (N, 3) [time, event, patient#]."""

    def __init__(self, patients, slices: dict[str, torch.Tensor]) -> None:
        xs, ys, self.patient_ids = [], [], []
        for k, r in enumerate(patients.itertuples()):
            s = slices.get(r.patient_id)
            if s is None or len(s) == 0:
                continue
            xs.append(s)
            ys.append(torch.tensor([[r.time_days, r.event, k]] * len(s), dtype=torch.float32))
            self.patient_ids.append(r.patient_id)
        self.x, self.y = torch.cat(xs), torch.cat(ys)
        self.patients = patients[patients["patient_id"].isin(self.patient_ids)].reset_index(drop=True)
        self.number_to_id = dict(enumerate(patients["patient_id"]))

    def __len__(self) -> int:
        return len(self.x)


# ---- training -------------------------------------------------------------------------------
def make_network(in_channels: int, img_size: int = 64, embed_dim: int = 64, depth: int = 4):
    from networks import VisionMambaSurv

    return VisionMambaSurv(in_channels=in_channels, img_size=img_size, embed_dim=embed_dim, depth=depth)


def _augment(seed: int):
    """The bundles' training augmentation, per slice: flip, +-60 deg rotation, 0.8-1.2 zoom."""
    from monai.transforms import Compose, RandFlip, RandRotate, RandZoom

    t = Compose([RandFlip(prob=0.5, spatial_axis=0),
                 RandRotate(range_x=np.pi / 3, prob=0.5, padding_mode="border"),
                 RandZoom(min_zoom=0.8, max_zoom=1.2, prob=0.5, padding_mode="edge", keep_size=True)])
    t.set_random_state(seed)
    return t


@torch.no_grad()
def predict_patients(model, data: SliceSet, batch: int = 128, device: str = "cpu") -> "pd.DataFrame":
    """Per-patient risk = mean of slice risks (survival.handlers.patient_risks, as the bundles)."""
    import pandas as pd

    from survival.handlers import patient_risks

    model.eval()
    out = torch.cat([model(data.x[i:i + batch].to(device)).float().cpu() for i in range(0, len(data), batch)])
    p = patient_risks(out, data.y, "mean")
    return pd.DataFrame({"patient_id": [data.number_to_id[int(n)] for n in p["patient_number"]],
                         "risk": p["risk"], "time_days": p["time"], "event": p["event"]})


def train_cox(model, train: SliceSet, epochs: int, lr: float, ckpt_dir: str | Path, seed: int = 0,
              batch_size: int = 16, weight_decay: float = 1e-4, val: SliceSet | None = None,
              device: str = "cpu", augment: bool = True) -> dict:
    """AdamW + cosine schedule, Cox partial likelihood (Efron) on event-guaranteeing batches.

    With `val`, the epoch with the best validation patient C is kept (selection on that split
    only); else the last epoch. A checkpoint per epoch in `ckpt_dir` lets an interrupted run
    resume at the next epoch. Returns the history (loss, val C per epoch, seconds)."""
    from survival.cox_loss import CoxPartialLikelihoodLoss
    from survival.metrics import harrell_c
    from voxsurv.training.sampler import EventBatchSampler

    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    loss_fn = CoxPartialLikelihoodLoss(ties="efron")
    sampler = EventBatchSampler(train.y[:, 1].int().tolist(), batch_size=batch_size, seed=seed)
    aug = _augment(seed) if augment else None
    hist = {"epoch": [], "loss": [], "val_c": [], "seconds": []}
    best = {"c": -1.0, "epoch": None, "state": None}
    start_epoch = 0
    ck = ckpt_dir / "last.pt"
    if ck.is_file():
        s = torch.load(ck, weights_only=False)
        model.load_state_dict(s["model"]), opt.load_state_dict(s["opt"]), sched.load_state_dict(s["sched"])
        hist, best, start_epoch = s["hist"], s["best"], s["epoch"] + 1
        if aug is not None:
            aug.set_random_state(seed + start_epoch)
        log.info("resuming %s at epoch %d", ckpt_dir, start_epoch)
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        model.train()
        sampler.set_epoch(epoch)
        losses = []
        for idx in sampler:
            x = train.x[idx]
            if aug is not None:
                x = torch.stack([torch.as_tensor(np.asarray(aug(xi))) for xi in x])
            risk = model(x.to(device))
            loss = loss_fn(risk, train.y[idx, :2].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
        sched.step()
        vc = None
        if val is not None:
            p = predict_patients(model, val, device=device)
            vc = float(harrell_c(p.time_days, p.event, p.risk))
            if vc > best["c"]:
                best = {"c": vc, "epoch": epoch, "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
        for k, v in (("epoch", epoch), ("loss", float(np.mean(losses))), ("val_c", vc), ("seconds", time.time() - t0)):
            hist[k].append(v)
        log.info("  epoch %d/%d: loss %.4f%s (%.0f s)", epoch + 1, epochs, hist["loss"][-1],
                 "" if vc is None else f", validation C {vc:.3f}", hist["seconds"][-1])
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "hist": hist, "best": best, "epoch": epoch}, ck.with_suffix(".tmp"))
        ck.with_suffix(".tmp").replace(ck)
    if val is not None and best["state"] is not None:
        model.load_state_dict(best["state"])
    return {"history": hist, "best_epoch": best["epoch"], "best_val_c": best["c"] if val is not None else None}
