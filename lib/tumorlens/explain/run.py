"""One explain-and-segment run end to end, beside `tumorlens.training.run.train_run`: the classifier chosen
(by validation), the maps compared and the weak-mask network trained on it (`scoring.evaluate_segmentation`),
and every product written into the run folder; and the localisation ablation, a step of its own (other
classifiers: the standard head against heads that pool the strongest locations).

    summary = explain_run(cfg, "runs/cpu/efficientnet_lite1/seed-43", "runs/cpu/explain")
    summary = explain_run(cfg, None, out, candidate_runs=runs)      # the best of ``runs`` by validation
    record = localisation_run(cfg, [standard, lse, topk], "runs/cpu/localisation")
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from tumorlens.config import Config
from tumorlens.explain.scoring import evaluate_segmentation, localisation_ablation
from tumorlens.records import RunInfo, best_by_validation
from tumorlens.utils.files import write_json

__all__ = ["CHOICE_RULE", "explain_run", "localisation_run"]

CHOICE_RULE = "best validation macro-F1 among the CNN runs"


def explain_run(
    cfg: Config,
    model_run: str | Path | None,
    out: str | Path,
    *,
    candidate_runs: Sequence[str | Path] = (),
    show_progress: bool = True,
    log=print,
) -> dict:
    """Explain ``model_run`` (or, given ``candidate_runs``, the one with the best validation macro-F1) on
    the expert masks with ``cfg``'s ``segment`` settings, read at the classifier's own recipe (backbone,
    modules, input size from its run record). Writes everything into ``out``; returns the summary
    (``summary.json``)."""
    choice = None
    if candidate_runs:
        choice = best_by_validation(candidate_runs) | {"rule": CHOICE_RULE}
        model_run = choice["run_dir"]
        log(
            f"explaining {choice['name']} (validation macro-F1 {choice['val_macro_f1']:.4f}; best of "
            f"{choice['considered']} finished candidates; missing: {choice['missing'] or 'none'})"
        )
    if not model_run:
        raise ValueError("explain_run needs a model_run or candidate_runs")
    info = RunInfo.read(model_run)
    cfg = cfg.override(
        {
            "model.backbone": info.backbone,
            "model.modules": list(info.modules),
            "data.image_size": info.image_size,  # another backbone may use its native size
        }
    )
    return evaluate_segmentation(cfg, model_run, out_dir=out, model_choice=choice, show_progress=show_progress)


def localisation_run(cfg: Config, runs: Sequence[str | Path], out: str | Path, *, show_progress: bool = True) -> dict:
    """The localisation ablation: ``runs`` (the first the reference, with the standard head) scored on the
    expert masks alike, each at its own recipe and input size (`scoring.localisation_ablation`: the paper's
    Grad-CAM and the configured map, each tuned on the tuning half). Writes ``out/localisation.json`` and
    returns what it holds."""
    if len(runs) < 2:
        raise ValueError(f"the localisation ablation compares 2 or more runs; received {len(runs)}: {list(runs)}")
    t0 = time.perf_counter()
    rows = localisation_ablation(cfg, runs, show_progress=show_progress)
    record = {
        "source": rows[0]["source"],
        "runs": [r["run"] for r in rows],
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json(Path(out) / "localisation.json", record, schema="localisation")
    return record
