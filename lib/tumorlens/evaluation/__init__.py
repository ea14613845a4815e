"""Evaluating trained runs beyond their own test scores: ensembles, robustness and calibration.

ensembles   soft voting and CNN features + LR / SVM, members chosen on validation
robustness  corruptions at three severities; temperature scaling
external    a model scored on another release's images (BRISC 2025): intervals, per view
lesion      the lesion-removal test: removed lesion -> no tumour? same-shaped control -> unchanged?
gate        the weak-mask network's evidence as a veto on tumour predictions (threshold chosen on validation)
"""

from tumorlens.utils.lazy import lazy_exports

_EXPORTS = {
    "evaluate_ensembles": "ensembles",
    "fit_hybrid": "ensembles",
    "select_members": "ensembles",
    "soft_vote": "ensembles",
    "CORRUPTIONS": "robustness",
    "calibration": "robustness",
    "corrupt": "robustness",
    "evaluate_robustness": "robustness",
    "load_external": "external",
    "score_external": "external",
    "view_of": "external",
    "gate_predictions": "gate",
    "gate_curve": "gate",
    "choose_threshold": "gate",
    "make_removal_set": "lesion",
    "removal_scores": "lesion",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
