"""Benchmark (not a test): do the weak-mask network's self-training rounds pay for their time?

    python benchmarks/network_rounds.py [--rounds-from REV] [--current DIR] [--profile cpu] [--out DIR]

Reads two explain steps' published records of the same classifier -- the one at git revision ``REV``
(the cpu profile trained three rounds there, ``segment.network_rounds: 3``) and the current
``results/<profile>/segmentation``, or ``--current DIR``, an explain step's folder such as
``runs/cpu/explain`` -- and writes, for each: the rounds (their pseudo-masks' area, the empty
ones, the tuning-half Dice of the network each came from), the network stage's seconds, and the network
rows' Dice on the report half (map only and + GrabCut) with bootstrap 95% intervals; then the paired
report-half difference, current minus ``REV``, over the same images. Nothing is trained or tuned here;
every number is read from the two explain steps' files (`network.json`, `summary.json`,
`per_image_methods.csv`). Writes ``network_rounds_<profile>.json``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _read(rev: str | None, rel: str) -> str:
    if rev is None:
        return (REPO / rel).read_text()
    return subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=REPO, check=True, capture_output=True, text=True).stdout


def _record(rev: str | None, base: str) -> dict:
    net = json.loads(_read(rev, f"{base}/network.json"))
    summary = json.loads(_read(rev, f"{base}/summary.json"))
    rows = [
        r for r in csv.DictReader(io.StringIO(_read(rev, f"{base}/per_image_methods.csv"))) if r["map"] == "network"
    ]
    return {"net": net, "summary": summary, "rows": {r["id"]: r for r in rows}}


def main() -> None:
    from tumorlens.metrics.stats import bootstrap_mean, paired_mean_diff
    from tumorlens.utils.environment import environment
    from tumorlens.utils.files import write_json

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds-from", default="d02f2ed", help="the git revision of the other explain step's results")
    ap.add_argument("--current", default=None, help="an explain step's folder (default: the published results)")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    published = f"results/{args.profile}/segmentation"
    current = Path(args.current).resolve().relative_to(REPO).as_posix() if args.current else published
    records = {args.rounds_from: _record(args.rounds_from, published), "current": _record(None, current)}
    ids = sorted(set.intersection(*(set(r["rows"]) for r in records.values())))
    out = {}
    for name, rec in records.items():
        net, summary = rec["net"], rec["summary"]
        out[name] = {
            "model": summary["model"],
            "rounds": [
                {
                    k: r.get(k)
                    for k in ("round", "pseudo_masks", "pseudo_mask_area", "n_empty_pseudo_masks", "tune_dice")
                }
                for r in net["rounds"]
            ],
            "epochs": net["epochs"],
            "network_seconds": round(sum(net.get("seconds", {}).values()), 1),
            "seconds": net.get("seconds"),
            "explain_stage_seconds": summary.get("seconds"),  # the explain step's stages (recorded since 80c4584)
            "tune_dice": {r["mask"]: r["tune_dice"] for r in summary["methods"] if r["map"] == "network"},
            "report_dice": {
                k: bootstrap_mean([float(rec["rows"][i][f"dice_{k}"]) for i in ids], seed=42)
                for k in ("cam", "grabcut")
            },
        }
    a, b = records["current"], records[args.rounds_from]
    if a["summary"]["model"] != b["summary"]["model"]:
        raise SystemExit(
            f"the two explain steps explain different classifiers: {a['summary']['model']} vs {b['summary']['model']}"
        )
    diff = {
        k: paired_mean_diff(
            [float(a["rows"][i][f"dice_{k}"]) for i in ids], [float(b["rows"][i][f"dice_{k}"]) for i in ids], seed=42
        )
        for k in ("cam", "grabcut")
    }
    result = {
        "profile": args.profile,
        "compared": {"current": current, "other": f"{args.rounds_from}:{published}"},
        "n_report": len(ids),
        "explain_steps": out,
        "current_minus_other": diff,
        "environment": environment(),
    }
    for name, r in out.items():
        print(
            f"{name:8s} {len(r['rounds'])} round(s), network stage {r['network_seconds']:.0f} s | report Dice map "
            f"{r['report_dice']['cam']['value']:.3f}, + GrabCut {r['report_dice']['grabcut']['value']:.3f}"
        )
    print(
        f"current - {args.rounds_from}: map {diff['cam']['diff']:+.3f} "
        f"[{diff['cam']['lo']:+.3f}, {diff['cam']['hi']:+.3f}]"
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    print(f"written to {write_json(Path(args.out) / f'network_rounds_{args.profile}.json', result)}")


if __name__ == "__main__":
    main()
