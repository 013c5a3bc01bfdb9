"""Which pre-trained weights stay fixed when fine-tuning, decided before the optimizer is built.

Modes (fixed a priori, both reported by the study; never chosen on the test split):
- "paper": the stem (convolutions + patch embedding, class token/position embedding) and the first
  depth/2 Mamba blocks are frozen, the later blocks, pooling and head learn (the paper's recipe);
- "head": only the final linear risk layer (`head.fc`) learns: a recalibration of the pre-trained
  features (stem, blocks, norm and slice pooling all frozen);
- "none": everything learns.
Freezing happens before any DDP wrapping, so DDP registers only the trainable parameters. Nothing
is written onto the network object: the functions return what they froze.
"""

from __future__ import annotations

import logging

from voxsurv.training.distributed import say, unwrap

logger = logging.getLogger(__name__)

FINETUNE_MODES = ("paper", "head", "none")


def _risk_layer_parameter(name: str) -> bool:
    return name.startswith("head.fc.") or ".head.fc." in name


def frozen_module_names(network) -> list[str]:
    """The highest-level submodules of `network` whose parameters are all frozen (in order)."""
    out: list[str] = []

    def walk(module, prefix: str) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            params = list(child.parameters())
            if params and not any(p.requires_grad for p in params):
                out.append(full)
            elif params:
                walk(child, full + ".")

    walk(unwrap(network), "")
    return out


def freeze_for_finetuning(network, mode: str = "paper") -> list[str]:
    """Freeze `network` (a VisionMambaSurv or SurvivalEnsemble) for fine-tuning mode `mode` and
    return the names of the frozen modules."""
    if mode not in FINETUNE_MODES:
        raise ValueError(f"finetune mode must be one of {FINETUNE_MODES}, got {mode!r}")
    module = unwrap(network)
    if mode == "none":
        module.freeze(stem=False, blocks=0)
    elif mode == "paper":
        module.freeze(stem=True, blocks=None)  # network default: first depth // 2 blocks
    else:
        module.freeze(stem=False, blocks=0)
        for name, p in module.named_parameters():
            p.requires_grad_(_risk_layer_parameter(name))
        module.train(module.training)  # BatchNorms whose parameters are all frozen stay in eval
    return frozen_module_names(module)


def trainable_parameters(network) -> list:
    """Parameters the optimizer updates (all of them for a network nothing froze)."""
    return [p for p in network.parameters() if p.requires_grad]


def prepare_for_finetuning(network, mode: str = "paper"):
    """`network` frozen for `mode` (see freeze_for_finetuning), with a line saying what learns."""
    frozen = freeze_for_finetuning(network, mode)
    n_train = sum(p.numel() for p in trainable_parameters(network))
    n_all = sum(p.numel() for p in network.parameters())
    say(f"fine-tuning mode {mode!r}: training {n_train:,} of {n_all:,} parameters; frozen: "
        f"{', '.join(frozen) if frozen else 'nothing'}")
    return network
