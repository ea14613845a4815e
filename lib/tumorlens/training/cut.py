"""Where to cut a backbone for fine-tuning: block boundaries no residual connection crosses."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tumorlens.models.classifier import backbone_layers

__all__ = ["valid_cuts", "find_cut"]


# graph surgery
def _parents(layer) -> list:
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        return []
    return [pn.operation for pn in nodes[0].parent_nodes]


def valid_cuts(model, backbone_layer_list: Sequence) -> list[int]:
    """Indices ``k`` into ``backbone_layer_list`` such that every layer after ``k`` depends only on
    layer ``k`` and later ones (a tensor that separates the backbone graph)."""
    index = {id(lay): i for i, lay in enumerate(backbone_layer_list)}
    n = len(backbone_layer_list)
    pmin = np.full(n, n, dtype=int)
    for j, lay in enumerate(backbone_layer_list):
        ps = [index.get(id(p), -1) for p in _parents(lay)]
        pmin[j] = min(ps) if ps else -1
    suffix_min = np.full(n + 1, n, dtype=int)
    for j in range(n - 1, -1, -1):
        suffix_min[j] = min(pmin[j], suffix_min[j + 1])
    return [k for k in range(n) if suffix_min[k + 1] >= k]


def find_cut(model, finetune_layers: int) -> tuple[int, list]:
    """``(k, layers)``: the cut index into the backbone layers for fine-tuning the last
    ``finetune_layers`` layers (at least that many follow the cut), and the backbone layers."""

    layers = backbone_layers(model)
    n = len(layers)
    cuts = valid_cuts(model, layers)
    ok = [k for k in cuts if n - 1 - k >= finetune_layers]
    return (max(ok) if ok else -1), layers
