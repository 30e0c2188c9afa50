"""Data-driven filter scores: HRank's feature-map rank and Molchanov et al.'s Taylor importance.

- **Rank** (Lin et al., CVPR 2020; lmbxmu/HRank ``get_feature_hook``): for each image and
  output channel, the matrix rank of the channel's H x W feature map, taken after the batch
  norm and ReLU that follow the conv, averaged over images. ``torch.linalg.matrix_rank`` with
  its default tolerance (the official code's ``torch.matrix_rank``).
- **Taylor** (Molchanov et al., CVPR 2019; NVlabs/Taylor_pruning, method 22): per channel and
  minibatch, ``(gamma dL/dgamma + beta dL/dbeta)^2`` on the batch norm after the conv, which
  equals the official gate criterion ``(sum_{n,h,w} y dL/dy)^2``; averaged over minibatches.

The pruners ``hrank`` and ``taylor`` compute these during a run (`baselines.hrank`,
`baselines.taylor`). `Probe` computes both for the criteria registry from a fixed set of
images, so LAASP's pool can include ``hrank`` and ``taylor`` (an extension: no published LAASP
uses data-driven criteria).
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from harness.prune.prunable import kept_modes


def feature_map_rank(activation: torch.Tensor) -> torch.Tensor:
    """Sum over the images of each channel's feature-map rank: (N, C, H, W) -> (C,) float64."""
    return torch.linalg.matrix_rank(activation.detach().float()).sum(dim=0).double().cpu()


def bn_taylor_term(bn: nn.BatchNorm2d) -> torch.Tensor:
    """``gamma dL/dgamma + beta dL/dbeta`` per channel, from the gradients in ``.grad`` (float64);
    square it (after summing coupled batch norms) for the criterion."""
    w, b = bn.weight, bn.bias
    term = (w.detach() * w.grad.detach()).double()
    if b is not None and b.grad is not None:
        term = term + (b.detach() * b.grad.detach()).double()
    return term.cpu()


class RankRecorder:
    """Forward hooks that sum each channel's feature-map rank of ReLU(output) at ``modules``
    (the batch norm after each conv, or the conv where none follows)."""

    def __init__(self, modules: Iterable[nn.Module]):
        self.modules = list(dict.fromkeys(modules))
        self.sums: dict[nn.Module, torch.Tensor] = {}
        self.images = 0
        self._handles: list = []

    def __enter__(self) -> "RankRecorder":
        first = self.modules[0] if self.modules else None

        def hook(module: nn.Module, _inp, out: torch.Tensor) -> None:
            if module is first:
                self.images += out.shape[0]
            ranks = feature_map_rank(F.relu(out))
            self.sums[module] = self.sums.get(module, 0) + ranks

        self._handles = [m.register_forward_hook(hook) for m in self.modules]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def mean(self, module: nn.Module) -> torch.Tensor:
        """Average rank per channel over the images seen."""
        return self.sums[module] / max(self.images, 1)


class Probe:
    """Rank and Taylor scores of every given layer on a fixed batch of images, computed on first
    use in eval mode (batch-norm statistics untouched) without touching ``.grad``; build a new
    probe after the network changes."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, targets: Iterable[nn.Module],
                 batch_size: int = 128):
        self.model, self.x, self.y, self.batch_size = model, x, y, batch_size
        self.targets = list(targets)  # where ranks are taken: each layer's batch norm, or the conv
        self._ranks: RankRecorder | None = None
        self._taylor: dict[nn.Module, torch.Tensor] | None = None

    def _target(self, conv: nn.Module, bn: nn.Module | None) -> nn.Module:
        return bn if bn is not None else conv

    def rank(self, conv: nn.Module, bn: nn.Module | None) -> torch.Tensor:
        if self._ranks is None:
            self._ranks = RankRecorder(self.targets)
            with self._ranks, torch.no_grad(), kept_modes(self.model):
                self.model.eval()
                for x in self.x.split(self.batch_size):
                    self.model(x)
        return self._ranks.mean(self._target(conv, bn))

    def taylor(self, conv: nn.Module, bn: nn.Module | None) -> torch.Tensor:
        """Molchanov's criterion for the channels of ``bn``, averaged over minibatches."""
        if bn is None or bn.weight is None:
            raise ValueError("the taylor criterion needs an affine batch norm after the conv")
        if self._taylor is None:
            bns = [m for m in self.model.modules() if isinstance(m, nn.BatchNorm2d) and m.weight is not None]
            params = [p for m in bns for p in (m.weight, m.bias)]
            sums = {m: torch.zeros(m.num_features, dtype=torch.float64) for m in bns}
            batches = 0
            with kept_modes(self.model):
                self.model.eval()
                for x, y in zip(self.x.split(self.batch_size), self.y.split(self.batch_size)):
                    grads = torch.autograd.grad(F.cross_entropy(self.model(x).float(), y), params, allow_unused=True)
                    for i, m in enumerate(bns):
                        gw, gb = grads[2 * i], grads[2 * i + 1]
                        term = torch.zeros(m.num_features, dtype=torch.float64)
                        if gw is not None:
                            term += (m.weight.detach() * gw).double().cpu()
                        if gb is not None:
                            term += (m.bias.detach() * gb).double().cpu()
                        sums[m] += term ** 2
                    batches += 1
            self._taylor = {m: s / max(batches, 1) for m, s in sums.items()}
        return self._taylor[bn]
