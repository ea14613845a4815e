"""The explanation stage: class activation maps, weak tumour masks, and how well they match expert masks.

cam           Grad-CAM / Grad-CAM++ maps (pure functions of model, images, layer, class)
weak_masks    CAM -> binarised mask and CAM + GrabCut mask for one image (`segment`)
ground_truth  BRISC 2025 expert masks or the phantoms' masks
scoring       explain a mask set, tune thresholds on one part, score the other
gallery       overlays and best/median/worst galleries (render only)
"""

from tumorlens.utils.lazy import lazy_exports

_EXPORTS = {
    "cam_maps": "cam",
    "grad_cam": "cam",
    "predict_and_explain": "cam",
    "upsample_normalise": "cam",
    "overlay": "gallery",
    "segmentation_gallery": "gallery",
    "MaskItem": "ground_truth",
    "brisc_items": "ground_truth",
    "mask_items_for": "ground_truth",
    "phantom_items": "ground_truth",
    "split_items": "ground_truth",
    "evaluate_segmentation": "scoring",
    "explain_items": "scoring",
    "score_items": "scoring",
    "summarise": "scoring",
    "tune_params": "scoring",
    "SegmentParams": "weak_masks",
    "binarise": "weak_masks",
    "grabcut_mask": "weak_masks",
    "head_mask": "weak_masks",
    "segment": "weak_masks",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
