"""Grad-CAM of a patient's risk for every slice of its tumour stack, put back into the input CT's
geometry.

The network sees a (C, H, W, S) stack: S axial slices of the 1 x 1 x 5 mm resampled volume, each
cut with the patient's field of view around its own tumour (``crop_boxes``: x0, y0, width_x,
width_y in voxels of that volume) and resized to H x W (custom_transforms.TumourStack). The risk
is ONE number pooled over the slices, so the Grad-CAM of slice s is the part of that number's
gradient that flows through slice s's stem features: slices are comparable with each other (a
slice the pooling weighs little gets a weak map). Each map is resized back to its crop box, laid
into a volume on the resampled grid, and resampled (linear) onto the input image's grid with
SimpleITK, so the NIfTI written has exactly the input CT's size, spacing, origin and direction.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CAM_LAYER", "slice_gradcam", "risk_and_slice_gradcam", "stack_to_volume", "resample_like",
           "attention_on_input_grid"]

#: the last spatially organised features of VisionMambaSurv (the Mamba blocks mix all tokens)
CAM_LAYER = "stem.conv2"
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def slice_gradcam(network: nn.Module, image: torch.Tensor, descriptors: torch.Tensor | None = None,
                  layer: str = CAM_LAYER) -> torch.Tensor:
    """Grad-CAM of the patient risk per slice: (C, H, W, S) stack -> (S, H, W), positive part, not
    normalised. See :func:`risk_and_slice_gradcam`."""
    return risk_and_slice_gradcam(network, image, descriptors, layer)[1]


def risk_and_slice_gradcam(network: nn.Module, image: torch.Tensor, descriptors: torch.Tensor | None = None,
                           layer: str = CAM_LAYER) -> tuple[torch.Tensor, torch.Tensor]:
    """The patient risk ((1,) tensor, as ``network(image[None], descriptors[None])[0]``) and its
    Grad-CAM per slice ((S, H, W), positive part, not normalised), from one forward pass.

    Per member and slice: weights = spatial mean of d risk / d activation, map = ReLU(sum over
    channels of weights x activation), upsampled bilinearly to H x W -- MONAI's ``GradCAM`` on a
    network whose batch is the S slices (tested against it). For a SurvivalEnsemble the risk is
    the members' mean, so member k's gradient is 1/n of its own: the maps are the members' own
    maps summed and divided by n. Members run one after the other (forward, backward, free), so
    memory holds one member's graph at a time. (One backward of the mean risk through all members
    gives the same maps at the same cost: the members share no computation.) Parameters do not
    require gradients during the pass (restored after): no weight gradient is computed or stored.
    """
    if image.dim() != 4:
        raise ValueError(f"expected one patient's stack (C, H, W, S), got {tuple(image.shape)}")
    members = getattr(network, "members", None)
    nets = list(members) if isinstance(members, nn.ModuleList) else [network]
    x = torch.as_tensor(image).detach().float().clone()[None]
    desc = None if descriptors is None else torch.as_tensor(descriptors).float().reshape(1, -1).to(x.device)
    n_slices, size = image.shape[-1], tuple(image.shape[1:3])
    was_training = network.training
    params = [p for p in network.parameters() if p.requires_grad]
    network.eval()
    risks, cam = [], None
    try:
        for p in params:
            p.requires_grad_(False)
        for net in nets:
            risk, member_cam = _member_gradcam(net, x, desc, layer)
            risks.append(risk)
            cam = member_cam if cam is None else cam + member_cam
    finally:
        for p in params:
            p.requires_grad_(True)
        network.train(was_training)
    if cam.shape[0] != n_slices:
        raise ValueError(f"{layer} saw {cam.shape[0]} slices, the stack has {n_slices}")
    cam = F.interpolate(cam / len(nets), size=size, mode="bilinear", align_corners=False)[:, 0]
    risk = risks[0] if len(nets) == 1 and members is None else torch.stack(risks).mean(0)
    return risk.reshape(-1)[:1], cam


def _member_gradcam(net: nn.Module, x: torch.Tensor, descriptors: torch.Tensor | None, layer: str):
    """(risk (1, 1) detached, ReLU(Grad-CAM) (S, 1, h, w) at the layer's resolution) of one network.

    The gradient is taken with ``torch.autograd.grad`` w.r.t. the layer's output only: nothing
    below the layer is differentiated and no parameter's ``.grad`` is touched."""
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        store["act"] = output

    handle = net.get_submodule(layer).register_forward_hook(hook)
    try:
        with torch.enable_grad():
            # an input that requires grad keeps the layer on the graph when the stem is frozen (fine-tuning)
            risk = net(x.clone().requires_grad_(True), descriptors)
            (grad,) = torch.autograd.grad(risk.reshape(-1)[0], store["act"])
    finally:
        handle.remove()
    a, g = store["act"].detach(), grad.detach()  # (S, channels, h, w): one patient's slices
    weights = g.mean(dim=(2, 3), keepdim=True)
    return risk.detach(), F.relu((weights * a).sum(dim=1, keepdim=True)).cpu()


def _meta_array(meta: Mapping, key: str) -> np.ndarray:
    if key not in meta:
        raise ValueError(f"the stack's meta has no {key!r} (made by custom_transforms.TumourStack?)")
    v = meta[key]
    return (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))


def stack_to_volume(values: torch.Tensor, meta: Mapping) -> sitk.Image:
    """(S, H, W) maps of a tumour stack -> a volume on the grid the stack was cut from.

    Each map is resized (bilinear, as the stack was resized from its crop box) to its crop box and
    laid at (x0, y0, slice index); parts of a box outside the volume are dropped; voxels no box
    covers are 0.

    Args:
        values: one (H, W) map per slice of the stack.
        meta: the stack's meta (``slice_indices``, ``crop_boxes``, ``volume_affine`` (RAS, MONAI),
            ``volume_spatial_shape``).

    Returns:
        a float32 SimpleITK image (LPS geometry) of the resampled volume's grid.
    """
    slices = _meta_array(meta, "slice_indices").astype(int).reshape(-1)
    boxes = _meta_array(meta, "crop_boxes").astype(int).reshape(-1, 4)
    shape = tuple(int(v) for v in _meta_array(meta, "volume_spatial_shape").reshape(-1))
    ras = _meta_array(meta, "volume_affine").astype(np.float64).reshape(4, 4)
    values = torch.as_tensor(values, dtype=torch.float32)
    if values.dim() != 3 or len(values) != len(slices) or len(boxes) != len(slices):
        raise ValueError(f"need one (H, W) map per slice: {tuple(values.shape)} maps, {len(slices)} slices, "
                         f"{len(boxes)} crop boxes")
    vol = np.zeros(shape, dtype=np.float32)  # (x, y, z)
    X, Y = shape[0], shape[1]
    for v, k, (x0, y0, nx, ny) in zip(values, slices, boxes):
        v = v[None, None]
        if tuple(v.shape[-2:]) != (nx, ny):
            v = F.interpolate(v, size=(nx, ny), mode="bilinear", align_corners=False)
        v = v[0, 0].numpy()
        ax0, ax1, ay0, ay1 = max(x0, 0), min(x0 + nx, X), max(y0, 0), min(y0 + ny, Y)
        if ax1 > ax0 and ay1 > ay0:
            vol[ax0:ax1, ay0:ay1, k] = v[ax0 - x0:ax1 - x0, ay0 - y0:ay1 - y0]
    lps = _RAS_TO_LPS @ ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    img = sitk.GetImageFromArray(np.ascontiguousarray(vol.transpose(2, 1, 0)))
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (lps[:3, :3] / spacing).reshape(-1)])
    img.SetOrigin([float(v) for v in lps[:3, 3]])
    return img


def resample_like(image: sitk.Image, reference: sitk.Image, linear: bool = True) -> sitk.Image:
    """``image`` on ``reference``'s grid (0 outside), float32."""
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    return sitk.Resample(image, reference, sitk.Transform(), interp, 0.0, sitk.sitkFloat32)


def attention_on_input_grid(cams: torch.Tensor, meta: Mapping, reference: sitk.Image) -> sitk.Image:
    """(S, H, W) Grad-CAMs of a stack -> one volume on the input CT's grid, scaled so that the
    patient's largest CAM value is 1 (slices stay comparable with each other)."""
    cams = torch.as_tensor(cams).detach().float().clamp_min(0)
    peak = float(cams.max()) if cams.numel() else 0.0
    if peak > 0:
        cams = cams / peak
    return resample_like(stack_to_volume(cams, meta), reference)
