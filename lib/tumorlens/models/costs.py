"""What the modules cost: parameters and FLOPs of each module on each backbone's last feature map."""

from __future__ import annotations

from typing import Sequence

import keras

from tumorlens.models.backbones import build_backbone
from tumorlens.models.blocks import CBAM, BoundaryRefinement, EdgeMap, MixedAttention, ResidualPathHead, SqueezeExcite

__all__ = ["count_flops", "block_costs"]


# what the modules cost
def count_flops(model) -> int:
    """Floating-point operations of one forward pass of ``model`` at batch size 1 (TF profiler;
    a multiply-add counts 2)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    specs = [tf.TensorSpec([1, *t.shape[1:]], tf.float32) for t in model.inputs]

    @tf.autograph.experimental.do_not_convert
    def forward(*xs):
        return model(list(xs) if len(xs) > 1 else xs[0])

    graph = convert_variables_to_constants_v2(tf.function(forward).get_concrete_function(*specs)).graph
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    opts = builder(builder.float_operation()).with_empty_output().build()
    old = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")
    try:
        prof = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=opts)
    finally:
        tf.get_logger().setLevel(old)
    return int(prof.total_float_ops)


def block_costs(
    backbones: Sequence[str] = ("mobilenetv2", "efficientnetb0", "vgg16", "efficientnet_lite0", "vit"),
    image_size: int = 224,
) -> list[dict]:
    """Parameters and FLOPs of each module (MAB, ResPath, SBR) and baseline (SE, CBAM) on each
    backbone's last feature map at ``image_size``, with the backbone's own size for scale.

    ResPath is measured as the extra cost over the global average pooling it replaces (which has
    none); SBR includes its fixed edge extraction on the full-resolution image.
    """
    rows = []
    for name in backbones:
        inputs = keras.Input((image_size, image_size, 3))
        base = build_backbone(name, inputs, "none")
        h, w, c = (int(d) for d in base.output.shape[1:])
        row_base = {
            "backbone": name,
            "feature_map": [h, w, c],
            "backbone_parameters": int(base.count_params()),
            "backbone_flops": count_flops(base),
        }
        feat = keras.Input((h, w, c))
        for block, make in (
            ("mab", lambda: MixedAttention()),
            ("respath", lambda: ResidualPathHead()),
            ("se", lambda: SqueezeExcite()),
            ("cbam", lambda: CBAM()),
        ):
            m = keras.Model(feat, make()(feat))
            flops = count_flops(m)
            if block == "respath":  # over the GAP it replaces
                flops -= count_flops(keras.Model(feat, keras.layers.GlobalAveragePooling2D()(feat)))
            rows.append({**row_base, "block": block, "parameters": int(m.count_params()), "flops": flops})
        img = keras.Input((image_size, image_size, 3))
        edges = EdgeMap((h, w))(img)
        m = keras.Model([feat, img], BoundaryRefinement()([feat, edges]))
        rows.append({**row_base, "block": "sbr", "parameters": int(m.count_params()), "flops": count_flops(m)})
    for r in rows:
        r["parameters_vs_backbone"] = r["parameters"] / r["backbone_parameters"]
    return rows
