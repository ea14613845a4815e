"""The training stage: two-phase transfer learning with prefix caching, and the run it writes.

cut           where the backbone is cut for fine-tuning (block boundaries)
prefix_cache  the frozen prefix's outputs, computed once and shared on disk
fit           both phases on image arrays (`train_model`)
run           one configuration end to end into its run directory (`train_run`)
"""

from tumorlens.utils.lazy import lazy_exports

_EXPORTS = {
    "find_cut": "cut",
    "valid_cuts": "cut",
    "TrainResult": "fit",
    "train_model": "fit",
    "run_dir_for": "run",
    "train_run": "run",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
