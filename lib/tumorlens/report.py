"""Figures and tables for the notebooks and the book (render only: nothing here computes results).

Plotly figures use the ``notebook_connected`` renderer; the book ships ``plotly.min.js`` in its
static files (see `tumorlens.book`), so the pages render offline too.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from tumorlens.config import CLASSES

__all__ = ["setup_plotly", "CLASS_COLOURS", "class_balance", "image_grid", "audit_table", "scan_table",
           "training_curves", "confusion_matrix", "metrics_table", "overlay", "segmentation_gallery",
           "segmentation_table", "dice_boxes", "systems_table", "comparisons_table", "png_bytes",
           "runs_table", "seeds_table", "ablation_bars", "reliability_diagram", "costs_table",
           "robustness_lines", "robustness_frame"]

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


def training_curves(history: Sequence[Mapping], title: str = "Training curves"):
    """Loss and accuracy per epoch, train vs validation, phases separated (rows of ``history.csv``)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    xs = list(range(1, len(history) + 1))
    for col, key in ((1, "loss"), (2, "accuracy")):
        for prefix, dash, name in (("", "solid", "train"), ("val_", "dash", "validation")):
            ys = [float(r.get(prefix + key, "nan")) for r in history]
            fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=name, line=dict(dash=dash),
                            legendgroup=name, showlegend=col == 1, row=1, col=col)
    phases = [r.get("phase") for r in history]
    if "finetune" in phases and "warmup" in phases:
        x0 = phases.index("finetune") + 0.5
        for col in (1, 2):
            fig.add_vline(x=x0, line=dict(color="grey", dash="dot"), row=1, col=col)
        fig.add_annotation(x=x0, y=1.05, yref="paper", text="fine-tuning starts", showarrow=False)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=title, height=360, margin=dict(t=70))
    return fig


def confusion_matrix(cm: Sequence[Sequence[int]], title: str = "Confusion matrix"):
    """Heatmap of a confusion matrix (rows: true class, columns: predicted), with counts."""
    import plotly.graph_objects as go

    names = [PRETTY[c] for c in CLASSES]
    z = np.asarray(cm)
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale="Blues", text=z, texttemplate="%{text}",
                               showscale=False))
    fig.update_layout(title=title, xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                      height=380, width=440, margin=dict(t=60))
    return fig


def metrics_table(metrics: Mapping[str, Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """One row per test set (official, dedup): n, accuracy, macro-F1, per-class F1."""
    import pandas as pd

    rows = {}
    for name, m in metrics.items():
        if not m.get("n"):
            continue
        rows[name] = {"images": m["n"], "accuracy": round(m["accuracy"], 4), "macro-F1": round(m["macro_f1"], 4),
                      **{f"F1 {PRETTY[c]}": round(m["per_class"][c]["f1"], 4) for c in CLASSES}}
    return pd.DataFrame(rows).T


def per_class_f1(metrics: Mapping[str, Mapping], title: str = "F1 per class"):
    """Grouped bars: F1 of each class on each test set in ``metrics`` (official, dedup), with the
    number of test images of the class in the hover text."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, m in metrics.items():
        if not m.get("n"):
            continue
        fig.add_bar(x=[PRETTY[c] for c in CLASSES], y=[m["per_class"][c]["f1"] for c in CLASSES],
                    name=f"{name} ({m['n']} images)",
                    text=[f"{m['per_class'][c]['f1']:.3f}" for c in CLASSES],
                    hovertext=[f"{m['per_class'][c].get('support', '?')} images" for c in CLASSES])
    fig.update_layout(title=title, barmode="group", yaxis_title="F1", yaxis_range=[0, 1.05], height=380)
    return fig


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A CAM drawn over an image (jet colour map), uint8 RGB."""
    import cv2

    heat = cv2.applyColorMap(np.clip(cam * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * heat, 0, 255).astype(np.uint8)


def _mask_panel(image: np.ndarray, mask: np.ndarray, colour=(255, 60, 60)) -> np.ndarray:
    import cv2

    out = (image.astype(np.float32) * 0.6).astype(np.uint8)
    out[mask] = (0.5 * out[mask] + 0.5 * np.array(colour)).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, colour, 1)
    return out


def segmentation_gallery(rows: Sequence[tuple], tile: int = 160) -> np.ndarray:
    """Compose rows of ``(title, image, cam, cam_mask, grabcut_mask, expert_mask)`` into one RGB image:
    image | CAM overlay | binarised CAM | GrabCut mask | expert mask."""
    import cv2

    heads = ["image", "Grad-CAM", "binarised CAM", "CAM + GrabCut", "expert mask"]
    out_rows = []
    for title, img, cam, cmask, gmask, truth in rows:
        tiles = [img, overlay(img, cam), _mask_panel(img, cmask, (255, 200, 0)), _mask_panel(img, gmask),
                 _mask_panel(img, truth, (60, 220, 60))]
        tiles = [cv2.resize(t, (tile, tile), interpolation=cv2.INTER_AREA) for t in tiles]
        band = np.full((22, tile * len(tiles), 3), 255, np.uint8)
        cv2.putText(band, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        out_rows.append(np.vstack([band, np.hstack(tiles)]))
    header = np.full((22, tile * len(heads), 3), 235, np.uint8)
    for k, h in enumerate(heads):
        cv2.putText(header, h, (k * tile + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([header, *out_rows])


def segmentation_table(summary: Mapping, prefix: str = "") -> "pandas.DataFrame":  # noqa: F821
    """Per class: n, mean and median (quartiles) Dice and IoU for CAM-only and CAM + GrabCut, the pointing
    game (strict and within the tolerance) and its map-free baseline (pointing at the head's centre)."""
    import pandas as pd

    rows = {}
    for cls, d in summary["per_class"].items():
        if f"{prefix}dice_cam" not in d or not d[f"{prefix}dice_cam"]:
            continue
        row = {"images": d["n"], "classified correctly": f"{d['accuracy']:.0%}"}
        for kind, name in (("cam", "CAM"), ("grabcut", "CAM+GrabCut")):
            for metric in ("dice", "iou"):
                s = d[f"{prefix}{metric}_{kind}"]
                row[f"{name} {metric.upper() if metric == 'iou' else 'Dice'} mean"] = round(s["mean"], 3)
                row[f"{name} {metric.upper() if metric == 'iou' else 'Dice'} median [IQR]"] = \
                    f"{s['median']:.3f} [{s['q1']:.2f}-{s['q3']:.2f}]"
        tol = summary.get("pointing_tolerance_px")
        for key, name in ((f"{prefix}pointing", "pointing game"), ("centre_pointing", "head-centre baseline")):
            row[name] = f"{d[key]:.0%}" if d.get(key) is not None else "n/a"
            if tol and d.get(f"{key}_near") is not None:
                row[f"{name} (≤{tol} px)"] = f"{d[f'{key}_near']:.0%}"
        rows[PRETTY.get(cls, cls)] = row
    return pd.DataFrame(rows).T


def dice_boxes(rows: Sequence[Mapping], prefix: str = "", title: str = "Dice per image"):
    """Box plots of Dice per class: CAM-only vs CAM + GrabCut (rows of ``per_image.csv``)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for kind, name in (("cam", "CAM only"), ("grabcut", "CAM + GrabCut")):
        fig.add_box(x=[PRETTY.get(r["class"], r["class"]) for r in rows],
                    y=[float(r[f"{prefix}dice_{kind}"]) for r in rows], name=name, boxmean=True)
    fig.update_layout(title=title, boxmode="group", yaxis_title="Dice", yaxis_range=[0, 1], height=400)
    return fig


def systems_table(results: Mapping, test_set: str = "official") -> "pandas.DataFrame":  # noqa: F821
    """Accuracy and macro-F1 with 95% bootstrap CIs per system (from ``ensembles.json``)."""
    import pandas as pd

    rows = {}
    for name, s in results["systems"].items():
        m = s[test_set]
        if not m.get("n"):
            continue
        rows[name] = {"images": m["n"],
                      "accuracy [95% CI]": f"{m['accuracy']:.4f} [{m['ci']['accuracy']['lo']:.3f}-{m['ci']['accuracy']['hi']:.3f}]",
                      "macro-F1 [95% CI]": f"{m['macro_f1']:.4f} [{m['ci']['macro_f1']['lo']:.3f}-{m['ci']['macro_f1']['hi']:.3f}]"}
    return pd.DataFrame(rows).T


def comparisons_table(rows: Sequence[Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """One row per comparison: systems, test set, metric, difference [95% CI], McNemar p.

    McNemar's test compares the two systems' correct/incorrect calls, so its p-value belongs to the
    accuracy rows; macro-F1 rows show only their bootstrap interval."""
    import pandas as pd

    return pd.DataFrame([{"system": r["a"], "vs": r["b"], "test set": r.get("test_set", ""), "metric": r["metric"],
                          "images": r["n"], "value": round(r["value_a"], 4), "vs value": round(r["value_b"], 4),
                          "difference [95% CI]": f"{r['diff']:+.4f} [{r['ci_lo']:+.3f}, {r['ci_hi']:+.3f}]",
                          "McNemar p": f"{r['p_mcnemar']:.3g}" if r["metric"] == "accuracy" else "—"} for r in rows])


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG-encode an RGB uint8 image (for ``IPython.display.Image(data=...)``)."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.asarray(rgb, np.uint8), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode the image as PNG")
    return buf.tobytes()


def runs_table(runs: Mapping[str, Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """Every run: accuracy and macro-F1 [95% CI] on both test sets (``rq.json["runs"]``)."""
    import pandas as pd

    rows = []
    for name, r in sorted(runs.items()):
        row = {"run": name, "parameters": f"{r['parameters']:,}"}
        for t, label in (("official", "official"), ("dedup", "de-duplicated")):
            for m, ml in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
                row[f"{ml} ({label})"] = f"{r[f'{t}_{m}']:.4f} [{r[f'{t}_{m}_lo']:.3f}-{r[f'{t}_{m}_hi']:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def seeds_table(rows: Sequence[Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """Mean ± sd over seeds per variant, test set and metric (``rq.json["rq1"]["seeds_table"]``)."""
    import pandas as pd

    out = {}
    for r in rows:
        key = (r["variant"], r["test_set"])
        out.setdefault(key, {"seeds": r["n"]})[r["metric"]] = f"{r['mean']:.4f} ± {r['sd']:.4f}" if r["n"] > 1 \
            else f"{r['mean']:.4f}"
    df = pd.DataFrame.from_dict(out, orient="index")
    df.index.names = ["variant", "test set"]
    return df


def ablation_bars(runs: Mapping[str, Mapping], variants: Sequence[str], test_set: str = "official",
                  metric: str = "accuracy", title: str = ""):
    """Bars with 95% CIs of one metric for the given runs (names as in ``rq.json["runs"]``)."""
    import plotly.graph_objects as go

    names = [v for v in variants if v in runs]
    vals = [runs[v][f"{test_set}_{metric}"] for v in names]
    fig = go.Figure(go.Bar(x=names, y=vals, error_y=dict(type="data", symmetric=False,
                                                         array=[runs[v][f"{test_set}_{metric}_hi"] - runs[v][f"{test_set}_{metric}"] for v in names],
                                                         arrayminus=[runs[v][f"{test_set}_{metric}"] - runs[v][f"{test_set}_{metric}_lo"] for v in names]),
                           text=[f"{x:.3f}" for x in vals], textposition="inside"))
    lo = min([runs[v][f"{test_set}_{metric}_lo"] for v in names] or [0])
    fig.update_layout(title=title or f"{metric} ({test_set} test set), 95% bootstrap intervals",
                      yaxis_range=[max(0, lo - 0.05), 1], height=420, xaxis_tickangle=-20)
    return fig


def reliability_diagram(y: np.ndarray, probs: np.ndarray, bins: int = 10, title: str = "Reliability diagram",
                        others: Mapping[str, np.ndarray] | None = None, name: str = "model"):
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
    fig.update_layout(title=title, xaxis_title="confidence", yaxis_title="accuracy", height=400, width=480,
                      xaxis_range=[0, 1], yaxis_range=[0, 1.02])
    return fig


def costs_table(blocks: Sequence[Mapping]) -> "pandas.DataFrame":  # noqa: F821
    """Parameters and MFLOPs of each module per backbone (``block_costs.json``)."""
    import pandas as pd

    df = pd.DataFrame([{"backbone": b["backbone"], "feature map": "x".join(map(str, b["feature_map"])),
                        "module": b["block"].upper() if b["block"] in ("se", "cbam", "mab", "sbr") else "ResPath",
                        "parameters": f"{b['parameters']:,}", "MFLOPs": round(b["flops"] / 1e6, 2),
                        "% of backbone parameters": round(100 * b["parameters_vs_backbone"], 2)} for b in blocks])
    return df.set_index(["backbone", "module"])


def robustness_lines(rows: Sequence[Mapping], test_set: str = "official", metric: str = "accuracy"):
    """Metric against corruption severity, one line per corruption (severity 0 = clean)."""
    import plotly.graph_objects as go

    clean = next(r[metric] for r in rows if r["kind"] == "clean" and r["test_set"] == test_set)
    fig = go.Figure()
    for kind in sorted({r["kind"] for r in rows} - {"clean"}):
        rs = sorted((r for r in rows if r["kind"] == kind and r["test_set"] == test_set), key=lambda r: r["severity"])
        fig.add_scatter(x=[0] + [r["severity"] for r in rs], y=[clean] + [r[metric] for r in rs], mode="lines+markers",
                        name=kind)
    fig.update_layout(title=f"{metric} under corruptions ({test_set} test set)", xaxis_title="severity (0 = clean)",
                      yaxis_title=metric, height=400, xaxis=dict(tickmode="array", tickvals=[0, 1, 2, 3]))
    return fig


def robustness_frame(rows: Sequence[Mapping], test_set: str = "official",
                     metric: str = "accuracy") -> "pandas.DataFrame":  # noqa: F821
    """Corruption x severity table of ``metric`` (accuracy, macro_f1, accuracy_drop or macro_f1_drop);
    cells read "value [95% CI]" when the rows carry intervals (``<metric>_lo``/``_hi``)."""
    import pandas as pd

    rs = [r for r in rows if r["test_set"] == test_set]
    ci = all(f"{metric}_lo" in r for r in rs)

    def cell(r):
        return f"{r[metric]:.3f} [{r[f'{metric}_lo']:.3f}, {r[f'{metric}_hi']:.3f}]" if ci else round(r[metric], 4)

    clean = next((cell(r) for r in rs if r["kind"] == "clean"), None)
    kinds = sorted({r["kind"] for r in rs} - {"clean"})
    sevs = sorted({r["severity"] for r in rs if r["kind"] != "clean"})
    table = {k: {s: next((cell(r) for r in rs if r["kind"] == k and r["severity"] == s), None) for s in sevs}
             for k in kinds}
    df = pd.DataFrame(table).T[sevs]
    df.columns = [f"severity {c}" for c in df.columns]
    df.insert(0, "clean", clean)
    df.index.name = "corruption"
    return df
