"""The model stage: backbones (with their pretrained weights), the paper's modules, the ViT, the classifier.

backbones   registry: builder, pixel normalisation, Grad-CAM layer, feature size
weights     Keras' download folder; the EfficientNet-Lite0 ImageNet port (offline)
torchfile   a torch-free reader of legacy PyTorch state dicts
layers      pixel normalisation and the in-model ``Preprocess`` layer
blocks      MAB, ResPath, SBR (+ SE, CBAM baselines) as Keras layers
vit         the minimal Vision Transformer
classifier  backbone + modules + head in one flat graph; ``load_model``
costs       parameters and FLOPs of each module
inference   probabilities and penultimate features in chunks
"""

from tumorlens.utils.lazy import lazy_exports

_EXPORTS = {
    "REGISTRY": "backbones",
    "BackboneSpec": "backbones",
    "build_backbone": "backbones",
    "get_spec": "backbones",
    "HEAD_LAYERS": "classifier",
    "backbone_layers": "classifier",
    "backbone_of": "classifier",
    "build_classifier": "classifier",
    "head_input_names": "classifier",
    "load_model": "classifier",
    "variant_name": "classifier",
    "block_costs": "costs",
    "count_flops": "costs",
    "penultimate_features": "inference",
    "predict_images": "inference",
    "WeightsUnavailableError": "weights",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
