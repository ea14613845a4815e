"""Plotly figures for the notebooks and the book (render only: nothing here computes results).

Plotly figures use the ``book`` renderer (`setup_plotly`): each figure is a ``<div>`` and a call of the
page's own ``Plotly`` — the book ships ``plotly.min.js`` in its static files (see `tumorlens.book.build`)
— with no CDN script and no module import, so the pages render offline; the figure's JSON travels
beside it (``application/vnd.plotly.v1+json``) for JupyterLab.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from tumorlens.config import CLASSES

__all__ = [
    "setup_plotly",
    "CLASS_COLOURS",
    "PRETTY",
    "class_balance",
    "image_grid",
    "training_curves",
    "loss_curve",
    "confusion_matrix",
    "per_class_f1",
    "dice_boxes",
    "method_dice",
    "ablation_bars",
    "reliability_diagram",
    "robustness_lines",
    "gate_curve",
]


CLASS_COLOURS = {"glioma": "#d62728", "meningioma": "#1f77b4", "notumor": "#7f7f7f", "pituitary": "#2ca02c"}


PRETTY = {"glioma": "glioma", "meningioma": "meningioma", "notumor": "no tumour", "pituitary": "pituitary"}


#: The name of the renderer `setup_plotly` registers.
RENDERER = "book"


def _book_renderer():
    import json

    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    class BookRenderer(MimetypeRenderer):
        """A figure as HTML that draws with the page's ``Plotly`` (loaded once by the book from its own
        ``_static/plotly.min.js``): no ``<script src=...cdn.plot.ly...>``, no ``require`` or ``import()``,
        no MathJax from a CDN; plus the figure's JSON for Jupyter front ends that render it."""

        def to_mimebundle(self, fig_dict):
            html = pio.to_html(
                fig_dict,
                include_plotlyjs=False,
                include_mathjax=False,
                full_html=False,
                default_width="100%",
                default_height="525px",
                validate=False,
                config={"responsive": True, "displaylogo": False},
            )
            data = json.loads(pio.to_json(fig_dict, validate=False))  # numpy arrays as lists
            return {"application/vnd.plotly.v1+json": data, "text/html": html}

    return BookRenderer()


def setup_plotly() -> None:
    """Select the renderer the book expects (call once at the top of a notebook): `RENDERER`, whose
    figures load nothing from the network."""
    import plotly.io as pio

    if RENDERER not in pio.renderers:
        pio.renderers[RENDERER] = _book_renderer()
    pio.renderers.default = RENDERER
    pio.templates.default = "plotly_white"


def class_balance(counts: Mapping[str, Mapping[str, int]], title: str = "Images per class and split"):
    """Grouped bars: ``counts[split][class]`` (e.g. `ScanReport.counts`, or per train/val/test)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for split, c in counts.items():
        fig.add_bar(
            name=split,
            x=[PRETTY[k] for k in CLASSES],
            y=[c.get(k, 0) for k in CLASSES],
            text=[c.get(k, 0) for k in CLASSES],
            textposition="outside",
        )
    fig.update_layout(title=title, barmode="group", yaxis_title="images", height=380, margin=dict(t=60, b=40))
    return fig


def view_mix_bars(mix: Mapping[str, Mapping], key: str = "view", title: str = ""):
    """Stacked shares per class of each view (``key="view"``) or apparent sequence (``"sequence"``)
    in the labelled sample (`tumorlens.data.annotations.view_sequence_mix`)."""
    import plotly.graph_objects as go

    classes = list(mix)
    values = list(next(iter(mix.values()))[key]) if mix else []
    fig = go.Figure()
    for v in values:
        fig.add_bar(
            name=v,
            x=[PRETTY[c] for c in classes],
            y=[mix[c][key][v]["share"] for c in classes],
            text=[mix[c][key][v]["k"] or "" for c in classes],
            textposition="inside",
        )
    fig.update_layout(
        title=title or f"{key.capitalize()} of the labelled Training images, per class",
        barmode="stack",
        yaxis=dict(title="share of the labelled images", tickformat=".0%"),
        height=380,
        margin=dict(t=60, b=40),
    )
    return fig


def image_grid(images: np.ndarray, titles: Sequence[str], cols: int = 4, title: str = "", size: int = 160):
    """A grid of uint8 images ``(N, H, W, 3)`` with one title each."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n = len(images)
    rows = max(1, -(-n // cols))
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=list(titles), horizontal_spacing=0.01, vertical_spacing=0.06
    )
    for i, img in enumerate(images):
        fig.add_trace(go.Image(z=np.asarray(img)), row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=title, height=rows * size + 80, width=cols * size + 40, margin=dict(t=60, l=10, r=10, b=10))
    return fig


def training_curves(history: Sequence[Mapping], title: str = "Training curves"):
    """Loss and accuracy per epoch, train vs validation, phases separated (rows of ``history.csv``)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    xs = list(range(1, len(history) + 1))
    for col, key in ((1, "loss"), (2, "accuracy")):
        for prefix, dash, name, colour in (
            ("", "solid", "train", "#636efa"),
            ("val_", "dash", "validation", "#ef553b"),
        ):  # one colour per split in both panels, as the legend says
            ys = [float(r.get(prefix + key, "nan")) for r in history]
            fig.add_scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                name=name,
                line=dict(dash=dash, color=colour),
                legendgroup=name,
                showlegend=col == 1,
                row=1,
                col=col,
            )
    phases = [r.get("phase") for r in history]
    if "finetune" in phases and "warmup" in phases:
        x0 = phases.index("finetune") + 0.5
        for col in (1, 2):
            fig.add_vline(x=x0, line=dict(color="grey", dash="dot"), row=1, col=col)
        # below the panels, clear of their titles
        fig.add_annotation(
            x=x0, y=-0.3, xref="x", yref="paper", text="fine-tuning starts", showarrow=False, font=dict(size=11)
        )
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title, height=380, margin=dict(t=70, b=80))
    return fig


def loss_curve(history: Sequence[Mapping], title: str = "Training loss"):
    """Loss per epoch (rows ``{"epoch", "loss"}``, one line per ``round`` when rows carry one)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for rnd in sorted({r.get("round", 1) for r in history}):
        rs = [r for r in history if r.get("round", 1) == rnd]
        fig.add_scatter(
            x=[r["epoch"] for r in rs], y=[r["loss"] for r in rs], mode="lines+markers", name=f"round {rnd}"
        )
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title="loss", height=320)
    return fig


def confusion_matrix(cm: Sequence[Sequence[int]], title: str = "Confusion matrix"):
    """Heatmap of a confusion matrix (rows: true class, columns: predicted), with counts."""
    import plotly.graph_objects as go

    names = [PRETTY[c] for c in CLASSES]
    z = np.asarray(cm)
    fig = go.Figure(
        go.Heatmap(z=z, x=names, y=names, colorscale="Blues", text=z, texttemplate="%{text}", showscale=False)
    )
    fig.update_layout(
        title=title,
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis_autorange="reversed",
        height=380,
        width=440,
        margin=dict(t=60),
    )
    return fig


def per_class_f1(metrics: Mapping[str, Mapping], title: str = "F1 per class"):
    """Grouped bars: F1 of each class on each test set in ``metrics`` (official, dedup), with the
    number of test images of the class in the hover text."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, m in metrics.items():
        if not m.get("n"):
            continue
        fig.add_bar(
            x=[PRETTY[c] for c in CLASSES],
            y=[m["per_class"][c]["f1"] for c in CLASSES],
            name=f"{name} ({m['n']} images)",
            text=[  # a class with few test images says how few, next to its score
                f"{m['per_class'][c]['f1']:.3f}"
                + (f" (n={m['per_class'][c]['support']})" if m["per_class"][c].get("support", 99) < 20 else "")
                for c in CLASSES
            ],
            hovertext=[f"{m['per_class'][c].get('support', '?')} images" for c in CLASSES],
        )
    fig.update_layout(title=title, barmode="group", yaxis_title="F1", yaxis_range=[0, 1.05], height=380)
    return fig


def dice_boxes(rows: Sequence[Mapping], prefix: str = "", title: str = "Dice per image"):
    """Box plots of Dice per class: the binarised map vs map + GrabCut (rows of ``per_image.csv``)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for kind, name in (("cam", "map only"), ("grabcut", "map + GrabCut")):
        fig.add_box(
            x=[PRETTY.get(r["class"], r["class"]) for r in rows],
            y=[float(r[f"{prefix}dice_{kind}"]) for r in rows],
            name=name,
            boxmean=True,
        )
    fig.update_layout(title=title, boxmode="group", yaxis_title="Dice", yaxis_range=[0, 1], height=400)
    return fig


def method_dice(rows: Sequence[Mapping], title: str = "Mean Dice per map and mask, with 95% intervals"):
    """Mean Dice [95% CI] of every map, map only vs map + GrabCut (``summary.json["methods"]``)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for kind, name in (("cam", "map only"), ("grabcut", "map + GrabCut")):
        rs = [r for r in rows if r["mask"] == kind]
        fig.add_bar(  # horizontal: the maps' long names read along their own row
            y=[r["map"] for r in rs],
            x=[r["dice_mean"] for r in rs],
            orientation="h",
            name=name,
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [r["dice_hi"] - r["dice_mean"] for r in rs],
                "arrayminus": [r["dice_mean"] - r["dice_lo"] for r in rs],
            },
        )
    n = len({r["map"] for r in rows})
    fig.update_layout(
        title=title,
        barmode="group",
        xaxis_title="mean Dice (report half)",
        xaxis_range=[0, 1],
        yaxis_autorange="reversed",  # the paper's map first, as in the table
        height=140 + 44 * n,
        legend={"x": 0.98, "xanchor": "right", "y": 0.02, "yanchor": "bottom"},  # where the bars leave room
    )
    return fig


def ablation_bars(
    runs: Mapping[str, Mapping],
    variants: Sequence[str],
    test_set: str = "official",
    metric: str = "accuracy",
    title: str = "",
):
    """Bars with 95% CIs of one metric for the given runs (names as in ``rq.json["runs"]``)."""
    import plotly.graph_objects as go

    names = [v for v in variants if v in runs]
    vals = [runs[v][f"{test_set}_{metric}"] for v in names]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=vals,
            error_y=dict(
                type="data",
                symmetric=False,
                array=[runs[v][f"{test_set}_{metric}_hi"] - runs[v][f"{test_set}_{metric}"] for v in names],
                arrayminus=[runs[v][f"{test_set}_{metric}"] - runs[v][f"{test_set}_{metric}_lo"] for v in names],
            ),
        )
    )
    lo = min([runs[v][f"{test_set}_{metric}_lo"] for v in names] or [0])
    bottom = max(0, lo - 0.05)
    fig.add_scatter(  # each value written near the visible foot of its bar, clear of the interval at its top
        x=names,
        y=[bottom] * len(names),
        text=[f"{x:.3f}" for x in vals],
        mode="text",
        textposition="top center",
        textfont={"color": "white"},
        showlegend=False,
        hoverinfo="skip",
    )
    fig.update_layout(
        title=title or f"{metric} ({test_set} test set), 95% bootstrap intervals",
        yaxis_range=[bottom, 1],
        height=420,
        xaxis_tickangle=-20,
        showlegend=False,
    )
    return fig


def reliability_diagram(
    y: np.ndarray,
    probs: np.ndarray,
    bins: int = 10,
    title: str = "Reliability diagram",
    others: Mapping[str, np.ndarray] | None = None,
    name: str = "model",
):
    """Confidence vs accuracy per bin (the diagonal is perfect calibration), with bin counts;
    ``others`` adds curves for other probabilities of the same images (e.g. after temperature scaling)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dash", color="grey"), name="perfect calibration")
    edges = np.linspace(0, 1, bins + 1)
    for label, p in {name: probs, **(others or {})}.items():
        conf, correct = p.max(1), p.argmax(1) == y
        xs, accs, counts = [], [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            m = (conf > lo) & (conf <= hi)
            if m.any():
                xs.append(float(conf[m].mean()))
                accs.append(float(correct[m].mean()))
                counts.append(int(m.sum()))
        fig.add_scatter(x=xs, y=accs, mode="lines+markers", name=label, text=[f"{c} images" for c in counts])
    fig.update_layout(
        title=title,
        xaxis_title="confidence",
        yaxis_title="accuracy",
        height=400,
        width=480,
        xaxis_range=[0, 1],
        yaxis_range=[0, 1.02],
    )
    return fig


def robustness_lines(rows: Sequence[Mapping], test_set: str = "official", metric: str = "accuracy"):
    """Metric against corruption severity, one line per corruption (severity 0 = clean)."""
    import plotly.graph_objects as go

    clean = next(r[metric] for r in rows if r["kind"] == "clean" and r["test_set"] == test_set)
    fig = go.Figure()
    for kind in sorted({r["kind"] for r in rows} - {"clean"}):
        rs = sorted((r for r in rows if r["kind"] == kind and r["test_set"] == test_set), key=lambda r: r["severity"])
        fig.add_scatter(
            x=[0] + [r["severity"] for r in rs], y=[clean] + [r[metric] for r in rs], mode="lines+markers", name=kind
        )
    fig.update_layout(
        title=f"{metric} under corruptions ({test_set} test set)",
        xaxis_title="severity (0 = clean)",
        yaxis_title=metric,
        height=400,
        xaxis=dict(tickmode="array", tickvals=[0, 1, 2, 3]),
    )
    return fig


def gate_curve(gate: Mapping, title: str = ""):
    """The evidence gate (``external.json["evidence_gate"]``): accuracy and no-tumour recall of each set
    against the threshold below which a tumour prediction becomes no tumour; the chosen threshold (on
    validation) marked."""
    import plotly.graph_objects as go

    rows = gate["curve"]
    t = [r["threshold"] for r in rows]
    fig = go.Figure()
    for name in gate["sets"]:
        for metric, dash in (("accuracy", "solid"), ("notumor_recall", "dot")):
            fig.add_scatter(
                x=t,
                y=[r[f"{name}_{metric}"] for r in rows],
                mode="lines",
                name=f"{name}: {'accuracy' if metric == 'accuracy' else 'no tumour recall'}",
                line=dict(dash=dash),
            )
    fig.add_vline(x=gate["chosen"]["threshold"], line_dash="dash", line_color="gray")
    fig.update_layout(
        title=title or "Evidence gate: a tumour call below the threshold<br>becomes no tumour",
        xaxis_title="threshold on the network's evidence (99th-percentile tumour probability)",
        yaxis_title="share",
        height=480,
        legend=dict(orientation="h", yanchor="top", y=-0.25, x=0),
        margin=dict(t=80, b=140),
    )
    return fig
