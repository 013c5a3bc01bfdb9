"""Risk-attention maps for one slice: MONAI Grad-CAM on the stem of VisionMambaSurv.

Why the stem: the Mamba blocks mix all 145 tokens, so the last spatially-organised features are
the stem's convolutions. ``stem.conv2`` (the second stride-2 conv-BN-ReLU block, a 24 x 24 grid at
96 px) is finer than the 12 x 12 token grid; MONAI's ``GradCAM`` weights its channels by the mean
gradient of the risk (the single output, ``class_idx=0``), keeps the positive part (regions that
raise the predicted hazard), and upsamples to the input size. Equivalent one-liner::

    from monai.visualize import GradCAM
    cam = GradCAM(nn_module=net, target_layers="stem.conv2")(x, class_idx=0)  # (B, 1, H, W)
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DEFAULT_CAM_LAYER", "risk_attention_map"]

DEFAULT_CAM_LAYER = "stem.conv2"


def risk_attention_map(net: nn.Module, image: torch.Tensor, target_layer: str = DEFAULT_CAM_LAYER,
                       normalise: bool = True) -> torch.Tensor:
    """Grad-CAM of the risk output at input resolution.

    Args:
        net: a network with a single risk output, e.g. :class:`networks.VisionMambaSurv`.
        image: (C, H, W) slice or (B, C, H, W) batch.
        target_layer: dotted module name whose activations are weighted.
        normalise: scale each map to [0, 1] (MONAI's default); False keeps raw CAM values.

    Returns:
        (B, 1, H, W) maps (B = 1 for a single slice). The network is run in eval mode and
        restored to its previous mode afterwards.
    """
    from monai.visualize import GradCAM

    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4:
        raise ValueError(f"image must be (C, H, W) or (B, C, H, W), got {tuple(image.shape)}")
    was_training = net.training
    net.eval()
    try:
        kwargs = {} if normalise else {"postprocessing": lambda x: x}
        cam = GradCAM(nn_module=net, target_layers=target_layer, **kwargs)
        # an input that requires grad keeps the stem's activations on the graph even when the
        # stem is frozen for fine-tuning (requires_grad=False parameters)
        with torch.enable_grad():
            out = cam(image.detach().clone().requires_grad_(True), class_idx=0)
    finally:
        net.train(was_training)
    return out.detach()
