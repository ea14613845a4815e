"""The explanation stage: class activation maps, weak tumour masks, and how well they match expert masks.

cam           Grad-CAM / Grad-CAM++ / LayerCAM maps, fused over layers, flip-averaged (pure functions of
              model, images, layers, class)
weak_masks    CAM -> binarised mask and CAM + GrabCut mask for one image (`segment`)
refine        the weak-mask network: pseudo-masks of training images -> a decoder on the classifier's encoder
ground_truth  BRISC 2025 expert masks or the phantoms' masks
scoring       explain a mask set, tune thresholds on one part, score the other
run           one explain-and-segment run end to end (`explain_run`, beside training's `train_run`)
gallery       overlays and best/median/worst galleries (render only)
"""

from tumorlens.utils.lazy import lazy_exports

_EXPORTS = {
    "CamSetting": "cam",
    "cam_maps": "cam",
    "class_activation_maps": "cam",
    "resolve_layers": "cam",
    "grad_cam": "cam",
    "predict_and_explain": "cam",
    "upsample_normalise": "cam",
    "overlay": "gallery",
    "segmentation_gallery": "gallery",
    "build_segmenter": "refine",
    "load_segmenter": "refine",
    "mask_probabilities": "refine",
    "pseudo_masks": "refine",
    "train_decoder": "refine",
    "train_segmenter": "refine",
    "MaskItem": "ground_truth",
    "brisc_items": "ground_truth",
    "mask_items_for": "ground_truth",
    "phantom_items": "ground_truth",
    "split_items": "ground_truth",
    "evaluate_segmentation": "scoring",
    "explain_run": "run",
    "explain_items": "scoring",
    "load_mask_set": "scoring",
    "method_table": "scoring",
    "score_items": "scoring",
    "summarise": "scoring",
    "tune_params": "scoring",
    "SegmentParams": "weak_masks",
    "binarise": "weak_masks",
    "grabcut_mask": "weak_masks",
    "head_mask": "weak_masks",
    "segment": "weak_masks",
    "weak_mask": "weak_masks",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
