"""Reading a weights file a user points us to (``--checkpoint``, a bundle's ``models/model.pt``),
with errors that say what is wrong with the FILE: missing, empty, truncated, text (e.g. a Git LFS
pointer), a pickled Python object instead of weights, or weights of another architecture.

Weights are always read with ``torch.load(weights_only=True)``: a checkpoint from an unknown
source must not run code, so the messages never suggest turning that off.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from voxsurv.core.errors import InputError

SAVE_WEIGHTS = "save only the weights: torch.save(model.state_dict(), PATH)"


def _kind_of_bytes(path: Path) -> str | None:
    """What the file looks like when it is not a torch checkpoint (None when it may be one)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04"):
        return None  # zip: torch >= 1.6 format
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return None  # legacy pickle
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer (a small text file), not the weights"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (Keras/TensorFlow?), not PyTorch weights"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "not a PyTorch checkpoint (unknown binary format)"
    if text.lstrip().startswith(("<!DOCTYPE", "<html", "<?xml")):
        return "an HTML/XML page (a failed download?), not the weights"
    return "a text file, not PyTorch weights"


def read_checkpoint(path: str | Path, device="cpu") -> dict:
    """The state dict in ``path`` (``{"model": state}`` full-state checkpoints are unwrapped).

    Raises InputError naming the file and what is wrong with it."""
    import pickle

    import torch

    path = Path(path)
    if not path.exists():
        raise InputError("weights file not found", path=str(path),
                         fix="check --checkpoint, or package the bundle (python -m voxsurv.inference.packaging)")
    if path.is_dir():
        raise InputError("weights path is a folder, not a file", path=str(path), fix="give the .pt file inside it")
    size = path.stat().st_size
    if size == 0:
        raise InputError("weights file is empty (0 bytes)", path=str(path),
                         fix="copy or download the file again; the earlier copy did not finish")
    kind = _kind_of_bytes(path)
    if kind:
        raise InputError(f"weights file is {kind}", path=str(path),
                         fix="point --checkpoint at the .pt weights file (for Git LFS: git lfs pull)")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (EOFError, zipfile.BadZipFile):
        raise _truncated(path, size) from None
    except RuntimeError as exc:
        if re.search(r"zip archive|central directory|PytorchStreamReader|unexpected EOF|file read failed",
                     str(exc)):
            raise _truncated(path, size) from None
        raise InputError(f"weights file cannot be read ({_first_sentence(exc)})", path=str(path),
                         fix="copy or download the file again") from None
    except pickle.UnpicklingError as exc:
        detail = _blocked_global(str(exc))
        raise InputError("weights file holds pickled Python objects besides tensors"
                         + (f" ({detail})" if detail else "") + ": voxsurv reads weights only, never code",
                         path=str(path), fix=SAVE_WEIGHTS) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # full-state checkpoints (model + optimizer + trainer)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"weights file holds a {type(state).__name__}, not a state dict of tensors",
                         path=str(path), fix=SAVE_WEIGHTS)
    return state


def _truncated(path: Path, size: int) -> InputError:
    return InputError(f"weights file is truncated or corrupt ({size} bytes; the zip archive inside is incomplete)",
                      path=str(path), fix="copy or download the file again and compare its sha256 with the source's")


def _first_sentence(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text.split(". ")[0][:200]


def _blocked_global(text: str) -> str:
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return f"e.g. {m.group(1)}: a whole pickled model or training object"
    m = re.search(r"Unsupported operand \d+|Unsupported class [\w.]+", text)
    return m.group(0) if m else ""


def describe_mismatch(network, state: dict, limit: int = 4) -> str:
    """Why ``state`` does not fit ``network``, in one line, with the detail that matters: missing
    and unexpected parameter names (first few + counts) and shape mismatches (checkpoint vs
    network), plus the input channels each side expects when the first layer differs."""
    own = network.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = []

    def names(keys):
        return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")

    if shapes:
        k, a, b = shapes[0]
        first = [s for s in shapes if len(s[1]) == 4]
        if first and first[0][1][1] != first[0][2][1]:
            k, a, b = first[0]
            parts.append(f"the checkpoint's first layer takes {a[1]} input channels, this bundle's network "
                         f"{b[1]} (1 CT + maps)")
        parts.append(f"{len(shapes)} shape mismatch(es), e.g. {k}: checkpoint {list(a)} vs network {list(b)}")
    if missing:
        parts.append(f"{len(missing)} parameter(s) missing from the checkpoint ({names(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected parameter(s) in the checkpoint ({names(unexpected)})")
    return "; ".join(parts) or "the state dict does not fit the network"
