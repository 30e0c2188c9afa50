"""Seeds and the environment facts every record carries."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)


def capture_rng(device: torch.device) -> dict[str, torch.Tensor]:
    """The global generators a run draws from (dropout, say): the CPU one, and its CUDA device's.

    Data order and augmentation use their own seeded generators; these are what is left.
    """
    state = {"rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(saved: dict, device: torch.device) -> None:
    """Put back what `capture_rng` saved; a CUDA state is restored only when the run is on CUDA again."""
    torch.set_rng_state(saved["rng"])
    if device.type == "cuda" and saved.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(saved["cuda_rng"], device)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict:
    """Versions and hardware, so a number in a table can be traced to where it was made."""
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cuda": torch.version.cuda,
    }
    if device.type == "cuda":  # a fractional-GPU sweep trial runs under its share of the device's memory
        from harness.train.memory import process_fraction

        env["gpu_memory_fraction"] = process_fraction(device)
    for pkg in ("torch", "torchvision", "torch-pruning", "numpy", "optuna", "ray"):
        env[pkg.replace("-", "_")] = _version(pkg)
    return env
