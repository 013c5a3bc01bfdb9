"""Bidirectional Mamba block of Vision Mamba (Vim, hustvl/Vim, ``bimamba_type="v2"``).

One block: ``x + drop_path(mixer(rmsnorm(x)))`` on an fp32 residual stream (Vim's ``Block`` with
``residual_in_fp32``; writing the residual add inside the block is the same arithmetic as Vim's
``(hidden, residual)`` pairs). The mixer shares ``in_proj``/``out_proj`` between directions and
has per-direction ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log`` and ``D``; the backward branch
runs on the flipped sequence and the two outputs are averaged (Vim's ``if_devide_out=True``).
Vim's own code silently runs one direction only when its fused CUDA path is off; this one always
runs both.

Selective scan backends: ``"torch"`` (:func:`networks.selective_scan.selective_scan`, exact,
CPU-friendly, any device) or ``"mamba_ssm"`` (mamba-ssm's CUDA ``selective_scan_fn``, same
signature). ``"auto"`` picks mamba-ssm for CUDA inputs when it imports, else torch.
Under ``torch.jit.script`` the scan is :func:`networks.selective_scan.selective_scan_graph` (the
same exact recurrence as plain tensor operations): neither a Python autograd Function nor a CUDA
extension can be compiled, and the model zoo scripts the network (``ckpt_export``).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F
from monai.networks.layers import DropPath
from torch import nn

from networks.selective_scan import selective_scan, selective_scan_graph

__all__ = ["RMSNorm", "BiMambaMixer", "MambaBlock", "resolve_scan_backend", "mamba_ssm_scan_fn"]

logger = logging.getLogger(__name__)

SCAN_BACKENDS = ("auto", "torch", "mamba_ssm")


def mamba_ssm_scan_fn() -> Optional[Any]:
    """mamba-ssm's CUDA ``selective_scan_fn`` if it imports (it needs its compiled extension)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or its CUDA extension / triton failing to load
        return None
    return selective_scan_fn


def resolve_scan_backend(requested: str, device_type: str, mamba_ssm_available: bool) -> str:
    """Which scan runs: pure decision logic, so it is testable without CUDA.

    ``"auto"`` -> ``"mamba_ssm"`` on CUDA when mamba-ssm imports, else ``"torch"``.
    ``"mamba_ssm"`` requested on CPU or without the package is an error, not a silent fallback.
    """
    if requested not in SCAN_BACKENDS:
        raise ValueError(f"scan_backend must be one of {SCAN_BACKENDS}, got {requested!r}")
    if requested == "torch":
        return "torch"
    usable = device_type == "cuda" and mamba_ssm_available
    if requested == "mamba_ssm" and not usable:
        raise RuntimeError(
            "scan_backend='mamba_ssm' needs a CUDA input and an importable mamba-ssm "
            f"(device={device_type!r}, mamba_ssm importable={mamba_ssm_available}). "
            "Fix: install the 'cuda' extra on a GPU machine, or use scan_backend='auto'/'torch'."
        )
    return "mamba_ssm" if usable else "torch"


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale (Mamba's ``RMSNorm``), computed in fp32."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class _Direction(nn.Module):
    """Per-direction parameters of the bimamba-v2 mixer."""

    def __init__(self, d_inner: int, d_state: int, d_conv: int, dt_rank: int, dt_min: float,
                 dt_max: float, dt_init_floor: float, dt_scale: float = 1.0) -> None:
        super().__init__()
        self.conv1d = nn.Conv1d(d_inner, d_inner, kernel_size=d_conv, groups=d_inner,
                                padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        # Mamba's dt initialisation: weight ~ U(-r^-1/2, r^-1/2); bias = softplus^-1(dt) with
        # dt log-uniform in [dt_min, dt_max]. The bias must not be re-initialised to zero.
        std = dt_rank ** -0.5 * dt_scale
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True
        # S4D-real initialisation A = -(1..N); kept as log for positivity
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(d_inner))
        self.D._no_weight_decay = True
        self.dt_rank, self.d_state = dt_rank, d_state

    def forward(self, xz: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                 torch.Tensor, torch.Tensor, torch.Tensor,
                                                 torch.Tensor, torch.Tensor]:
        """Scan inputs (u, delta, A, B, C, D, z, delta_bias) of this direction from in_proj's
        (B, 2 d_inner, L) output; delta's bias goes in as delta_bias (softplus in the scan)."""
        length = xz.shape[-1]
        x, z = xz.chunk(2, dim=1)  # (B, d_inner, L) each
        x = F.silu(self.conv1d(x)[..., :length])
        x_dbl = self.x_proj(x.transpose(1, 2))  # (B, L, dt_rank + 2N)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight).transpose(1, 2)
        A = -torch.exp(self.A_log.float())
        return (x, dt, A, B.transpose(1, 2), C.transpose(1, 2), self.D.float(), z,
                self.dt_proj.bias.float())


class BiMambaMixer(nn.Module):
    """Vim's bidirectional Mamba mixer (bimamba v2), (B, L, d_model) -> (B, L, d_model).

    Args:
        d_model: token width.
        d_state: SSM state size N.
        d_conv: depthwise causal conv width.
        expand: d_inner = expand * d_model.
        dt_rank: rank of the dt projection ("auto" = ceil(d_model / 16)).
        scan_backend: "auto" | "torch" | "mamba_ssm" (see :func:`resolve_scan_backend`).
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 0.001, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4, scan_backend: str = "auto") -> None:
        super().__init__()
        if scan_backend not in SCAN_BACKENDS:
            raise ValueError(f"scan_backend must be one of {SCAN_BACKENDS}, got {scan_backend!r}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_backend = scan_backend
        self.active_backend: Optional[str] = None
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.forward_branch = _Direction(self.d_inner, d_state, d_conv, self.dt_rank, dt_min,
                                         dt_max, dt_init_floor)
        self.backward_branch = _Direction(self.d_inner, d_state, d_conv, self.dt_rank, dt_min,
                                          dt_max, dt_init_floor)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    @torch.jit.unused
    def _scan_eager(self, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                    C: torch.Tensor, D: torch.Tensor, z: torch.Tensor,
                    delta_bias: torch.Tensor) -> torch.Tensor:
        """The backend chosen for this device (logged when it changes): the exact chunked scan
        with its hand-written backward on CPU, mamba-ssm's kernel on CUDA when available."""
        device_type = u.device.type
        cuda_fn = mamba_ssm_scan_fn() if device_type == "cuda" else None
        backend = resolve_scan_backend(self.scan_backend, device_type, cuda_fn is not None)
        if backend != self.active_backend:
            logger.info("selective scan backend: %s (requested %s, device %s)", backend,
                        self.scan_backend, device_type)
            self.active_backend = backend
        scan = cuda_fn if backend == "mamba_ssm" else selective_scan
        return scan(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=True)

    def _scan(self, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
              C: torch.Tensor, D: torch.Tensor, z: torch.Tensor,
              delta_bias: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return selective_scan_graph(u, delta, A, B, C, D, z, delta_bias, True, 0)
        return self._scan_eager(u, delta, A, B, C, D, z, delta_bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        xz = self.in_proj(hidden).transpose(1, 2)  # (B, 2 d_inner, L)
        u, dt, A, B, C, D, z, bias = self.forward_branch(xz)
        out_f = self._scan(u, dt, A, B, C, D, z, bias)
        u, dt, A, B, C, D, z, bias = self.backward_branch(xz.flip(-1))
        out_b = self._scan(u, dt, A, B, C, D, z, bias)
        out = (out_f + out_b.flip(-1)) * 0.5
        return self.out_proj(out.transpose(1, 2))


class MambaBlock(nn.Module):
    """Pre-norm residual block: ``x + drop_path(mixer(norm(x)))``, residual kept in fp32."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 drop_path: float = 0.0, scan_backend: str = "auto") -> None:
        super().__init__()
        self.norm = RMSNorm(d_model)
        self.mixer = BiMambaMixer(d_model, d_state=d_state, d_conv=d_conv, expand=expand,
                                  scan_backend=scan_backend)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return x + self.drop_path(self.mixer(self.norm(x)))
