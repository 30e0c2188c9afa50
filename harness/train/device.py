"""Device selection and precision: which device a run uses and in what arithmetic it computes.

Precision (``--precision``): ``fp32``, ``bf16`` or ``fp16`` autocast, or ``auto`` = bf16 on a CUDA
GPU with native bf16 (compute capability 8.0+), fp16 with a gradient scaler on older GPUs, fp32 on
CPU. ``fp32`` on CUDA is true fp32: TF32 is turned off for convolutions and matrix products, so
an fp32 GPU run computes what an fp32 CPU run does up to rounding order. Mixed precision is CUDA
only: CPU runs stay fp32, which keeps them bit-reproducible for a seed.

``deterministic`` (``--deterministic``, CUDA only) trades speed for repeatability: cuDNN's
deterministic kernels, no autotuning, PyTorch's deterministic-algorithms switch (warn-only: an
op without a deterministic kernel warns instead of failing the run) and the cuBLAS workspace
setting. Without it cuDNN autotunes and picks the fastest kernels, which may differ run to run.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Iterator

import torch

from harness.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CUBLAS_DETERMINISTIC = ":4096:8"  # cuBLAS's documented setting for reproducible results


def select_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA if present), ``cpu``, ``cuda`` or ``cuda:N``, checked here: one clear error, not a crash later."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UserError(f"--device {name}: this harness runs on cpu or cuda devices; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but CUDA is not available here; use --device cpu or auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise UserError(f"--device {name}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
                        f"(cuda:0 to cuda:{count - 1}); pass one of those, or cuda")
    return device


def bf16_native(capability: tuple[int, int]) -> bool:
    """bf16 tensor-core math needs compute capability 8.0 (Ampere) or later.

    `torch.cuda.is_bf16_supported()` also says yes for older GPUs, which emulate bf16 slowly; and it
    asks about the current device, not necessarily the run's.
    """
    return tuple(capability) >= (8, 0)


def cuda_has_native_bf16(device: torch.device) -> bool:
    if torch.version.hip:  # ROCm numbers its architectures differently; its own check is the right one there
        return torch.cuda.is_bf16_supported()
    return bf16_native(torch.cuda.get_device_capability(device))


def resolve_precision(mode: str, device: torch.device) -> str:
    """The arithmetic a run uses: ``fp32``, ``bf16`` or ``fp16``. UserError for one the device cannot run."""
    if mode not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)} (got {mode!r})")
    if device.type != "cuda":
        if mode in ("auto", "fp32"):
            return "fp32"
        raise UserError(f"--precision {mode} needs a CUDA device, and this run is on {device}; "
                        "CPU runs compute in fp32: use --precision fp32 (or auto)")
    if mode == "auto":
        return "bf16" if cuda_has_native_bf16(device) else "fp16"
    if mode == "bf16" and not cuda_has_native_bf16(device):
        major, minor = torch.cuda.get_device_capability(device)
        raise UserError(f"--precision bf16: {torch.cuda.get_device_name(device)} (compute capability {major}.{minor}) "
                        "has no native bf16 (it needs 8.0 or later); use --precision fp16 (with a gradient scaler) "
                        "or fp32")
    return mode


# ----------------------------------------------------------------------------- TF32 switches
def _new_tf32_api() -> bool:
    """torch >= 2.9 has per-backend ``fp32_precision``; mixing it with the legacy ``allow_tf32`` raises."""
    return hasattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision")


def tf32_state() -> tuple:
    if _new_tf32_api():
        return ("new", torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    return ("legacy", torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)


def set_tf32_state(state: tuple) -> None:
    kind, conv, matmul = state
    if kind == "new":
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = conv, matmul
    else:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


def set_tf32(conv: bool) -> None:
    """TF32 for fp32 convolutions on (PyTorch's default) or off; fp32 matrix products stay true fp32."""
    if _new_tf32_api():
        set_tf32_state(("new", "tf32" if conv else "ieee", "ieee"))
    else:
        set_tf32_state(("legacy", conv, False))


@contextlib.contextmanager
def exact_fp32(device: torch.device) -> Iterator[None]:
    """True fp32 and no cuDNN autotuning inside the block (LAASP's candidate losses), restored after.

    TF32 rounds convolution inputs to 10 mantissa bits (about 1e-3 relative), enough to reorder
    near-tied candidates differently than on CPU; the stacked candidate batches change shape all
    the time, so autotuning would re-benchmark again and again for little gain.
    """
    if device.type != "cuda":
        yield
        return
    saved, benchmark = tf32_state(), torch.backends.cudnn.benchmark
    set_tf32(False)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        set_tf32_state(saved)
        torch.backends.cudnn.benchmark = benchmark


# ----------------------------------------------------------------------------- precision
@dataclass(frozen=True)
class Precision:
    """How the engine runs forward passes on a device.

    ``mode`` is what was asked (``auto``/``fp32``/``bf16``/``fp16``), ``name`` what it resolved to
    on this device. ``amp=False`` is the first API's switch and means fp32 whatever ``mode`` says.
    Both devices use the channels_last memory format, the fast path for convolutions (measured on
    the 2-core CPU: ResNet-20 training 447 -> 632 images/s, benchmarks/bench_throughput.py).
    """

    device: torch.device
    amp: bool = True
    mode: str = "auto"
    deterministic: bool = False
    name: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", resolve_precision(self.mode if self.amp else "fp32", self.device))

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for plain fp32."""
        return _DTYPES[self.name]

    @property
    def channels_last(self) -> bool:
        return self.device.type in ("cuda", "cpu")

    @property
    def tf32(self) -> bool:
        """Whether fp32 convolutions may use TF32: only inside mixed-precision CUDA runs (PyTorch's default there)."""
        return self.device.type == "cuda" and self.name != "fp32"

    def describe(self) -> dict:
        """What a record says about the arithmetic of its run."""
        return {"compute": self.name, "requested": self.mode if self.amp else "fp32",
                "grad_scaler": self.name == "fp16", "tf32": self.tf32, "deterministic": self.deterministic}

    def configure(self) -> None:
        """Set the process-wide backend switches this run needs (a reused sweep worker keeps no earlier run's)."""
        if self.deterministic or torch.are_deterministic_algorithms_enabled():
            torch.use_deterministic_algorithms(self.deterministic, warn_only=True)
        if self.device.type != "cuda":
            return  # CPU: plain fp32, deterministic already
        set_tf32(self.tf32)
        torch.backends.cudnn.benchmark = not self.deterministic
        torch.backends.cudnn.deterministic = self.deterministic
        if self.deterministic:
            # read when cuBLAS creates its handle: effective if this process has not used CUDA yet
            # (a CLI run); set it in the shell to be sure
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = self.dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device.type, enabled=self.name == "fp16")

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x
