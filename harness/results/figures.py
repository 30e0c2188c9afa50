"""What every figure shares: the `Plot` the report and ``plots`` command take, a pyplot-free
figure on the Agg canvas, and PNG bytes."""
from __future__ import annotations

import io
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


@dataclass
class Plot:
    name: str          # file stem, e.g. "accuracy_vs_flops"
    title: str
    caption: str       # one sentence saying what is shown and how it was computed
    figure: Figure


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
