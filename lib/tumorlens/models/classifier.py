"""The classifier builder: backbone + any subset of the modules + head, in one flat graph.

    model = build_classifier("efficientnet_lite0", ["mab", "respath", "sbr"], image_size=224,
                             weights="imagenet")

The model takes **raw images** (float 0..255 RGB, ``(B, S, S, 3)``; normalisation is inside) and
returns the 4 class probabilities in `tumorlens.config.CLASSES` order. The head attaches to the
backbone's output tensor, so every backbone layer is a layer of the model:
``model.get_layer(get_spec(backbone).target_layer)`` is the Grad-CAM layer.

Order of the modules after the backbone: SBR (needs the raw image's edges), then SE / CBAM
(baselines), then MAB; ResPath replaces the global average pooling of the head.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Sequence

import keras

from tumorlens.config import CLASSES, POOLINGS, check_modules, variant_name
from tumorlens.models.backbones import (
    REGISTRY,
    build_backbone,
    get_spec,
)  # also registers Preprocess and the ViT layers
from tumorlens.models.blocks import (
    CBAM,
    BoundaryRefinement,
    EdgeMap,
    LocalPooling,
    MixedAttention,
    ResidualPathHead,
    SqueezeExcite,
)

__all__ = [
    "HEAD_LAYERS",
    "POOLINGS",
    "variant_name",
    "build_classifier",
    "backbone_layers",
    "head_input_names",
    "disable_backbone_dropout",
    "backbone_of",
    "load_model",
]


#: Names of the layers the builder adds after the backbone.
HEAD_LAYERS = ("sbr_edges", "sbr", "se", "cbam", "mab", "respath", "gap", "pool", "head_dropout", "predictions")


def disable_backbone_dropout(model: keras.Model) -> None:
    """Set the rate of every Dropout inside the backbone (EfficientNet's stochastic depth) to 0.

    A frozen prefix must be deterministic for its outputs to be cached (`tumorlens.train`); the
    head's own dropout is kept.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout) and layer.name not in HEAD_LAYERS:
            layer.rate = 0.0


def build_classifier(
    backbone: str = "efficientnet_lite0",
    modules: Sequence[str] = (),
    *,
    image_size: int = 224,
    weights: str = "none",
    dropout: float = 0.3,
    num_classes: int = len(CLASSES),
    vit: dict | None = None,
    pooling: str = "gap",
) -> keras.Model:
    """Build backbone + modules + head.

    Args:
        backbone: a name from `tumorlens.backbones.REGISTRY`.
        modules: any subset of ``mab``, ``respath``, ``sbr`` (and the baselines ``se``, ``cbam``).
        image_size: input side in pixels (>= 32).
        weights: ``imagenet``, ``none`` or a path (see `tumorlens.backbones.build_backbone`).
        dropout: rate of the head's dropout.
        num_classes: outputs of the softmax.
        vit: keyword arguments of `tumorlens.vit.build_vit_encoder` (backbone ``vit`` only).
        pooling: ``gap`` (global average), ``lse`` or ``topk`` (`LocalPooling`, layer ``pool``); not
            with ``respath``, which replaces the pooling.

    Returns:
        A functional ``keras.Model`` named `variant_name` (with - for +): ``(B, S, S, 3)`` raw images ->
        ``(B, num_classes)`` probabilities.
    """
    mods = check_modules(modules)
    spec = get_spec(backbone)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an integer >= 32; received image_size={image_size!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1); received dropout={dropout!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; received pooling={pooling!r}")
    if pooling != "gap" and "respath" in mods:
        raise ValueError(f"respath replaces the head's pooling; received pooling={pooling!r} with it (use gap)")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    base = build_backbone(backbone, inputs, weights, **(vit or {}))
    disable_backbone_dropout(base)
    x = base.output
    if "sbr" in mods:
        edges = EdgeMap(grid=tuple(int(d) for d in x.shape[1:3]), name="sbr_edges")(inputs)
        x = BoundaryRefinement(name="sbr")([x, edges])
    if "se" in mods:
        x = SqueezeExcite(name="se")(x)
    if "cbam" in mods:
        x = CBAM(name="cbam")(x)
    if "mab" in mods:
        x = MixedAttention(name="mab")(x)
    if "respath" in mods:
        x = ResidualPathHead(name="respath")(x)
    elif pooling == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = LocalPooling(pooling, name="pool")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name=variant_name(backbone, mods).replace("+", "-"))
    assert model.get_layer(spec.output_layer) is not None
    return model


def backbone_layers(model: keras.Model) -> list:
    """The model's backbone layers (every layer but the input and the head), in graph order."""
    return [lay for lay in model.layers if lay.name not in HEAD_LAYERS and not isinstance(lay, keras.layers.InputLayer)]


def head_input_names(model: keras.Model, backbone: str) -> list[str]:
    """Layers whose outputs feed the head: the backbone output, plus ``sbr_edges`` when SBR is used."""
    names = [get_spec(backbone).output_layer]
    if any(lay.name == "sbr_edges" for lay in model.layers):
        names.append("sbr_edges")
    return names


def backbone_of(model: keras.Model) -> str | None:
    """The backbone a tumorlens classifier was built on, from its name (`variant_name` with - for +);
    None when the name starts with no known backbone."""
    return next((b for b in sorted(REGISTRY, key=len, reverse=True) if model.name.startswith(b)), None)


def load_model(path: str | Path):
    """Load a ``.keras`` classifier saved by tumorlens (registers the custom layers first).

    ``path`` may be a ``.keras`` file or a run directory holding ``model.keras``.
    """

    p = Path(path)
    if p.is_dir():
        p = p / "model.keras"
    if not p.is_file():
        raise FileNotFoundError(f"no model at {p} (expected a .keras file or a run directory with model.keras)")
    if p.suffix == ".keras" and not zipfile.is_zipfile(p):
        raise ValueError(f"{p}: not a .keras model (a .keras file is a zip archive; this one is not)")
    try:
        return keras.models.load_model(p)
    except (TypeError, ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{p}: Keras cannot load this model ({type(exc).__name__}: {exc})") from exc
