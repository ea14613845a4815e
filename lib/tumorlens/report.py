"""Figures and tables for the notebooks and the book (render only: nothing here computes results).

Plotly figures use the ``notebook_connected`` renderer; the book ships ``plotly.min.js`` in its
static files (see `tumorlens.book`), so the pages render offline too.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from tumorlens.config import CLASSES

__all__ = ["setup_plotly", "CLASS_COLOURS", "class_balance", "image_grid", "audit_table", "scan_table"]

CLASS_COLOURS = {"glioma": "#d62728", "meningioma": "#1f77b4", "notumor": "#7f7f7f", "pituitary": "#2ca02c"}
PRETTY = {"glioma": "glioma", "meningioma": "meningioma", "notumor": "no tumour", "pituitary": "pituitary"}


def setup_plotly() -> None:
    """Select the renderer the book expects (call once at the top of a notebook)."""
    import plotly.io as pio

    pio.renderers.default = "notebook_connected"
    pio.templates.default = "plotly_white"


def class_balance(counts: Mapping[str, Mapping[str, int]], title: str = "Images per class and split"):
    """Grouped bars: ``counts[split][class]`` (e.g. `ScanReport.counts`, or per train/val/test)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for split, c in counts.items():
        fig.add_bar(name=split, x=[PRETTY[k] for k in CLASSES], y=[c.get(k, 0) for k in CLASSES],
                    text=[c.get(k, 0) for k in CLASSES], textposition="outside")
    fig.update_layout(title=title, barmode="group", yaxis_title="images", height=380, margin=dict(t=60, b=40))
    return fig


def image_grid(images: np.ndarray, titles: Sequence[str], cols: int = 4, title: str = "", size: int = 160):
    """A grid of uint8 images ``(N, H, W, 3)`` with one title each."""
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    n = len(images)
    rows = max(1, -(-n // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), horizontal_spacing=0.01,
                        vertical_spacing=0.06)
    for i, img in enumerate(images):
        fig.add_trace(go.Image(z=np.asarray(img)), row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=title, height=rows * size + 80, width=cols * size + 40, margin=dict(t=60, l=10, r=10, b=10))
    return fig


def scan_table(report_dict: Mapping) -> "pandas.DataFrame":  # noqa: F821
    import pandas as pd

    rows = {split: {PRETTY[c]: v[c] for c in CLASSES} | {"total": v["total"]}
            for split, v in report_dict["counts"].items()}
    return pd.DataFrame(rows).T


def audit_table(audit_dict: Mapping) -> "pandas.DataFrame":  # noqa: F821
    """Per class: Testing images, those with an exact / near copy in Training, and the de-duplicated count."""
    import pandas as pd

    t = audit_dict["testing_vs_training"]
    rows = {PRETTY.get(k, k): v for k, v in {**t["per_class"], "total": t["total"]}.items()}
    df = pd.DataFrame(rows).T
    df.columns = ["Testing images", "exact copy in Training", "near copy in Training", "any copy in Training",
                  "kept (de-duplicated)"]
    df["share with a copy"] = (df["any copy in Training"] / df["Testing images"]).map("{:.0%}".format)
    return df
