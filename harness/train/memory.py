"""GPU memory a process may use: what is still free to it, its share of a shared GPU, and giving
cached blocks back between sweep trials.

Fractional-GPU sweep trials (``--gpus-per-trial 0.25``) run side by side on one device. Each caps
its allocator at its share (`cap_process_share`), so one trial cannot starve the others, and
code that sizes batches from free memory (LAASP's candidate rows) reads the cap through
`available_bytes`.
"""
from __future__ import annotations

import gc

import torch

_SHARES: dict[int, float] = {}  # what cap_process_share set, for a torch that cannot report the fraction


def _index(device: torch.device | int) -> int:
    if isinstance(device, int):
        return device
    return device.index if device.index is not None else torch.cuda.current_device()


def process_fraction(device: torch.device) -> float:
    """The per-process memory fraction set on ``device`` (1.0 when none was set)."""
    getter = getattr(torch.cuda, "get_per_process_memory_fraction", None)  # newer torch reports it
    if getter is not None:
        try:
            return float(getter(device))
        except (RuntimeError, TypeError, ValueError):
            pass
    return _SHARES.get(_index(device), 1.0)


def available_bytes(device: torch.device) -> int | None:
    """Bytes this process can still allocate on ``device``; None on CPU (not measured there).

    Free device memory plus this process's cached but unused blocks, and never more than its
    per-process fraction of the whole device minus what it has already allocated.
    """
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    cached_unused = torch.cuda.memory_reserved(device) - allocated
    within_share = int(process_fraction(device) * total) - allocated
    return max(0, min(free + cached_unused, within_share))


def cap_process_share(share: float, device: torch.device | int = 0) -> bool:
    """Cap this process's CUDA allocator at ``share`` of the device (0 < share < 1); False when nothing was capped."""
    if not (0 < share < 1) or not torch.cuda.is_available():
        return False
    torch.cuda.set_per_process_memory_fraction(share, device)
    _SHARES[_index(device)] = share
    return True


def release_cached_memory() -> None:
    """Give the CUDA allocator's cached blocks back to the device (between trials of a reused worker)."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
