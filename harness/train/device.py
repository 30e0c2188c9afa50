"""Device selection and mixed precision: CUDA with AMP and channels_last when present, CPU otherwise."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from harness.errors import UserError


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but CUDA is not available here; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from exc


@dataclass(frozen=True)
class Precision:
    """How the engine runs forward passes on a device.

    On CUDA: autocast (bfloat16 where supported, else float16 with a GradScaler). On CPU:
    plain float32, which keeps CPU runs bit-reproducible. Both use the channels_last memory
    format, the fast path for convolutions (measured on the 2-core CPU: ResNet-20 training
    447 -> 632 images/s, benchmarks/bench_throughput.py).
    """

    device: torch.device
    amp: bool

    @property
    def dtype(self) -> torch.dtype | None:
        if not (self.amp and self.device.type == "cuda"):
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    @property
    def channels_last(self) -> bool:
        return self.device.type in ("cuda", "cpu")

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = self.dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x
