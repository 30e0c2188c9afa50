"""The paper's reported LAASP results, as data, for ``table --compare-paper``.

Source: D. Ghimire, K. Lee, S.-H. Kim, "Loss-aware automatic selection of structured pruning
criteria for deep neural network acceleration", Image and Vision Computing 136 (2023) 104745,
as transcribed in the project's design note (../shared/design/LAASP.md, "Reported results
(seed table)"). Accuracies are top-1 % (mean ± std over the authors' runs where they give one);
``flops_reduction`` is a fraction. The seed table's own "drop" column is deliberately not
stored: drops are always computed from the two accuracies (the seed's ResNet-56 drop, 0.12,
disagrees with 93.61 - 93.04 = 0.57).

The accuracies are best-epoch numbers: the authors' training loop saves ``model_best`` (the
epoch with the best test accuracy of its last call, the fine-tuning after pruning) and their
eval scripts load it. ``table --compare-paper`` therefore shows ours the same way
(``--metric best``), optimistic like theirs.
"""
from __future__ import annotations

from dataclasses import dataclass

SOURCE = ("Ghimire, Lee & Kim, Image and Vision Computing 136 (2023) 104745, LAASP results "
          "(seed table in ../shared/design/LAASP.md)")


@dataclass(frozen=True)
class PaperResult:
    model: str                      # registry name (harness.models)
    dataset: str                    # registry name (harness.data)
    baseline_top1: float
    baseline_top1_std: float | None
    top1: float
    top1_std: float | None
    flops_reduction: float          # fraction, e.g. 0.533
    top5: float | None = None
    method: str = "laasp"

    @property
    def drop(self) -> float:
        return self.baseline_top1 - self.top1


PAPER_RESULTS: tuple[PaperResult, ...] = (
    PaperResult("vgg16", "cifar10", 93.79, 0.23, 93.90, 0.16, 0.346),
    PaperResult("vgg16", "cifar10", 93.79, 0.23, 93.79, 0.11, 0.605),
    PaperResult("resnet32", "cifar10", 93.12, 0.04, 92.64, 0.09, 0.533),
    PaperResult("resnet56", "cifar10", 93.61, 0.11, 93.04, 0.08, 0.526),
    PaperResult("resnet110", "cifar10", 94.41, 0.07, 94.17, 0.16, 0.525),
    PaperResult("resnet110", "cifar10", 94.41, 0.07, 93.58, 0.21, 0.585),
    PaperResult("resnet18", "imagenet", 70.58, None, 68.66, None, 0.422, top5=88.50),
    PaperResult("resnet34", "imagenet", 73.90, None, 72.65, None, 0.414, top5=90.98),
    PaperResult("resnet50", "imagenet", 76.48, None, 75.85, None, 0.423, top5=92.81),
    PaperResult("resnet50", "imagenet", 76.48, None, 75.44, None, 0.539, top5=92.59),
    PaperResult("mobilenet_v2", "imagenet", 71.79, None, 71.00, None, 0.300, top5=89.86),
    PaperResult("mobilenet_v2", "imagenet", 71.79, None, 68.45, None, 0.545, top5=88.40),
)

# A row of ours is matched with the paper row of the same model and dataset whose FLOPs
# reduction is nearest to ours, if it is within this many (fraction) of it.
MATCH_TOLERANCE = 0.10


def match_paper(model: str, dataset: str, flops_reduction: float | None,
                tolerance: float = MATCH_TOLERANCE) -> PaperResult | None:
    """The paper's result nearest in FLOPs reduction for this model and dataset, or None."""
    if flops_reduction is None:
        return None
    candidates = [p for p in PAPER_RESULTS if p.model == model and p.dataset == dataset]
    if not candidates:
        return None
    best = min(candidates, key=lambda p: abs(p.flops_reduction - flops_reduction))
    return best if abs(best.flops_reduction - flops_reduction) <= tolerance + 1e-12 else None
