"""The ``tumorlens`` command: thin argument parsing that calls the library.

tumorlens data scan PATH [--json]          count usable images, name every bad file
tumorlens data audit PATH [--json] [--out DIR]
                                           exact / near duplicates across splits, de-duplicated test
tumorlens data fetch [--dest DIR]          download the Kaggle dataset (kagglehub)
tumorlens data phantoms OUT [--size N]     write the synthetic phantom dataset
tumorlens models [--json]                  parameters and FLOPs of each module on each backbone
tumorlens train --profile P [--backbone B] [--modules M ...] [--seed N] [--set KEY=VALUE ...]
tumorlens run --profile P [--part headline|supplementary|study ...] [--only NB ...] [--workers N | --scheduler ADDR]
                                           execute the notebooks of a profile (papermill, resumable; Dask)
tumorlens predict PATH... [--model RUN] [--ensemble RUN ... | published] [--explain] [--segment] [--out DIR]
                                           without --model: the published model (models/cpu); exit 0 when
                                           an image was predicted, 1 when none could be, 2 on a usage error
tumorlens external --profile P [--folder DIR ...] [--no-runs]
                                           the published models and every run on another release (per view)
tumorlens evaluate lesion --profile P [--model RUN ...] [--images-out DIR]
                                           the lesion-removal test (expert masks): removed -> no tumour?
tumorlens verify --profile P [--recipe NAME]  retrain a published recipe, compare (exit 1 outside the seed spread)
tumorlens publish --profile P [--force]    ship the profile's best model, ensemble and mask network (<= 30 MB)
tumorlens bench --profile P --model RUN [--ensemble RUN ...] [--out FILE]
tumorlens collect --profile P              gather its runs into results/<profile>/
tumorlens book --profile P [--strict] [--workers N]   build the Jupyter Book from results/<profile>/
tumorlens config show [--profile P]        the resolved settings as JSON
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

from tumorlens import __version__, paths
from tumorlens.errors import TumorlensError
from tumorlens.utils.quiet import quiet_native_logs

# Every command imports its stage inside its function, and parsing imports none: TensorFlow takes seconds
# to import, NumPy a tenth of one, and `tumorlens --help`, `data scan` or `config show` must not wait for
# them (`tumorlens --help` starts in about 0.1 s; tests/test_hardening.py checks that parsing loads neither).

__all__ = ["main", "DEFAULT_PROFILE"]

#: Every command's ``--profile`` default: the published profile (`tumorlens.experiments.published.
#: PUBLISHED_PROFILE`, tested equal), whose results and models the repository holds. A plain ``tumorlens
#: run`` therefore resumes from what is published; ``--profile smoke`` runs the small synthetic one.
DEFAULT_PROFILE = "cpu"

#: The plan's parts (`tumorlens.experiments.jobs.PLAN_PARTS`, which imports the model stages; equal, tested).
PLAN_PARTS = ("headline", "supplementary", "study")


def _number(kind: type, test, what: str):
    """An argparse ``type``: ``kind(text)`` that passes ``test``, else a usage error naming the value."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}; received {text!r}") from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"expected {what}; received {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


_positive_int = _number(int, lambda v: v > 0, "a positive integer")
_non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_unit_interval = _number(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _cmd_data_scan(args) -> int:
    from tumorlens.data.inventory import scan

    report = scan(args.path, show_progress=not args.json and not args.quiet, use_cache=not args.no_cache)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.summary())
    return 0


def _cmd_data_audit(args) -> int:
    from tumorlens.config import load_config
    from tumorlens.data.inventory import scan
    from tumorlens.data.leakage import audit
    from tumorlens.utils.files import write_json, write_text

    a = load_config(args.profile).audit
    report = scan(args.path, show_progress=not args.json and not args.quiet)
    result = audit(
        report,
        thumb_size=a.thumb_size,
        hash_distance=a.hash_distance if args.hash_distance is None else args.hash_distance,
        correlation=a.correlation if args.correlation is None else args.correlation,
        show_progress=not args.json and not args.quiet,
        use_cache=not args.no_cache,
    )
    d = result.to_dict()
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "audit.json", d, schema="audit")
        write_text(out / "dedup_test.csv", "path\n" + "".join(f"{p}\n" for p in result.dedup_test()))
        d["written"] = [str(out / "audit.json"), str(out / "dedup_test.csv")]
    if args.json:
        _print_json(d)
        return 0
    t = d["testing_vs_training"]
    print(
        f"{report.root}: {d['n_images']} images, {d['n_pairs']} duplicate pairs "
        f"({', '.join(f'{k}={v}' for k, v in d['pairs'].items())}); {d['cross_class_pairs']} pairs cross classes"
    )
    print(f"{'class':12s}{'testing':>9s}{'exact':>8s}{'near':>7s}{'any':>7s}{'dedup kept':>12s}")
    for cls, c in {**t["per_class"], "total": t["total"]}.items():
        print(
            f"{cls:12s}{c['testing']:9d}{c['exact_in_training']:8d}{c['near_in_training']:7d}"
            f"{c['any_in_training']:7d}{c['dedup_kept']:12d}"
        )
    for s in d["sensitivity"]:
        print(f"  {s['rule']}: {s['testing_with_copy_in_training']} Testing images have a copy in Training")
    for w in d.get("written", []):
        print(f"wrote {w}")
    return 0


def _cmd_data_fetch(args) -> int:
    from tumorlens.data.fetch import fetch_kaggle

    path = fetch_kaggle(args.dest)
    print(f"dataset ready at {path}")
    return 0


def _cmd_data_phantoms(args) -> int:
    from tumorlens.data.phantoms import write_phantoms

    ps = write_phantoms(
        args.out,
        size=args.size,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        duplicates=args.duplicates,
        seed=args.seed,
    )
    print(f"phantoms written to {ps.root} ({len(ps.duplicates)} planted duplicates)")
    return 0


def _cmd_config_show(args) -> int:
    from tumorlens.config import load_config

    cfg = load_config(args.profile)
    _print_json({**cfg.to_dict(), "resolved": {"data_root": str(cfg.data_root), "runs_root": str(cfg.runs_root)}})
    if cfg.data.source != "phantoms" and not Path(cfg.data_root).is_dir():
        print(
            f"warning: data_root {cfg.data_root} does not exist: point TUMORLENS_DATA (or data.root) at the "
            "Kaggle dataset, or run `tumorlens data fetch` (see data/README.md)",
            file=sys.stderr,
        )
    return 0


def _cmd_models(args) -> int:
    from tumorlens.models.backbones import REGISTRY
    from tumorlens.models.costs import block_costs

    rows = block_costs(args.backbones or list(REGISTRY), image_size=args.image_size)
    if args.json:
        _print_json({"image_size": args.image_size, "blocks": rows})
        return 0
    print(f"{'backbone':20s}{'feature map':>16s}{'block':>9s}{'parameters':>12s}{'MFLOPs':>10s}{'% of backbone':>15s}")
    for r in rows:
        fm = "x".join(map(str, r["feature_map"]))
        print(
            f"{r['backbone']:20s}{fm:>16s}{r['block']:>9s}{r['parameters']:12,d}{r['flops'] / 1e6:10.2f}"
            f"{100 * r['parameters_vs_backbone']:14.2f}%"
        )
    return 0


def _cmd_train(args) -> int:
    import yaml

    from tumorlens.config import load_config
    from tumorlens.experiments.counterfactual import train

    overrides = {"seed": args.seed} if args.seed is not None else {}
    if args.backbone:
        overrides["model.backbone"] = args.backbone
    if args.modules is not None:
        overrides["model.modules"] = [m for m in args.modules if m]
    for item in args.set or []:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    cfg = load_config(args.profile, overrides=overrides)
    summary = train(cfg, run_dir=args.out)
    _print_json(summary)
    return 0


def _cmd_run(args) -> int:
    from tumorlens.config import load_config
    from tumorlens.experiments.collect import results_dir
    from tumorlens.experiments.jobs import explained_run, selected
    from tumorlens.experiments.runner import plan, run_profile

    if args.status:  # what a run would do, and why; runs nothing
        from tumorlens.experiments.jobs import job_state, run_name

        root = load_config(args.profile).runs_root
        rows = []
        for job in [j for p in (args.part or [None]) for j in plan(args.profile, p)]:
            if selected(job, args.only, root):
                state, why = job_state(job, results_profile=args.profile)
                rows.append({"job": run_name(job.run_dir, args.profile), "state": state, "why": why, "job_": job})
        cfg = load_config(args.profile)
        later = (
            cfg.reproduce.explain_seeds
            and "supplementary" in (args.part or ["supplementary"])
            and explained_run(cfg.runs_root) is None
        )
        if args.json:
            _print_json([{k: r[k] for k in ("job", "state", "why")} for r in rows])
            return 0
        for r in rows:
            j = r["job_"]
            print(
                f"{r['state']:9s} {j.part:13s} {j.notebook:14s} {r['job']}"
                + (f"  ({'; '.join(r['why'])})" if r["why"] else "")
            )
        if later:
            print("later     supplementary 03_explain     the explain step's seed replicates (planned once it has run)")
        return 0

    for job, status in run_profile(
        args.profile,
        only=args.only,
        part=args.part,
        force=args.force,
        workers=args.workers,
        scheduler=args.scheduler,
    ):
        print(f"{status:8s} {job.notebook}  ->  {job.output}")
    if not args.only:
        print(f"results collected in {results_dir(args.profile)}")
    return 0


def _cmd_predict(args) -> int:
    from tumorlens.experiments.predict import main_predict

    return main_predict(args)


def _cmd_external(args) -> int:
    from tumorlens.experiments.external import run_external

    r = run_external(
        args.profile, args.folder, out="" if args.no_write else None, show_progress=not args.quiet, runs=args.runs
    )
    for s in r["sets"]:
        for name, m in s["systems"].items():
            views = ", ".join(f"{v} {d['accuracy']:.3f} (n={d['n']})" for v, d in m["per_view"].items())
            nt = m["notumor_recall"]
            print(
                f"{s['name']}: {name}: accuracy {m['accuracy']:.4f} [{m['accuracy_lo']:.4f}, {m['accuracy_hi']:.4f}], "
                f"macro-F1 {m['macro_f1']:.4f}, no-tumour recall {'n/a' if nt is None else f'{nt:.3f}'}; {views}"
                + (f"; {m['n_bad']} unreadable file(s) not scored" if m["n_bad"] else "")
            )
    return 0


def _cmd_evaluate_lesion(args) -> int:
    from tumorlens.experiments.lesion import run_lesion_test, run_validation_lesion_test

    if args.validation:
        v = run_validation_lesion_test(
            args.profile, runs=args.model or (), include_published=not args.no_published, show_progress=not args.quiet
        )
        _print_lesion(v["models"], "validation: ")
        return 0
    r = run_lesion_test(
        args.profile,
        runs=args.model or (),
        include_published=not args.no_published,
        masks=args.masks,
        dilation=args.dilation,
        methods=args.methods,
        out="" if args.no_write else args.out,
        images_out=args.images_out,
        show_progress=not args.quiet,
    )
    _print_lesion(r["models"])
    return 0


def _print_lesion(models: dict, prefix: str = "") -> None:
    for name, sc in models.items():
        o = sc["overall"]
        rates = "; ".join(
            f"{m}: removed -> no tumour {o[m]['removed_notumor']['value']:.3f}, control -> no tumour "
            f"{o[m]['control_notumor']['value']:.3f}, control kept {o[m]['control_kept']['value']:.3f}"
            for m in sc["methods"]
        )
        print(f"{prefix}{name}: originals -> no tumour {o['original']['notumor']['value']:.3f}; {rates}")


def _cmd_verify(args) -> int:
    from tumorlens.experiments.verify import format_verify, verify

    r = verify(args.profile, args.recipe, out="" if args.no_write else None, show_progress=not args.quiet)
    print(format_verify(r))
    return 0 if r["inside_seed_spread"] else 1


def _cmd_publish(args) -> int:
    from tumorlens.experiments.published import publish, read_manifest

    folder = publish(
        args.profile, single=args.single, ensemble=args.ensemble, segmentation=args.segmentation, force=args.force
    )
    mf = read_manifest(args.profile, folder)
    print(f"published {len(mf['models'])} model(s) in {paths.relative(folder)} ({mf['total_bytes'] / 1e6:.1f} MB):")
    for name, m in mf["models"].items():
        role = "single" if name == mf["single"] else "ensemble member"
        acc = m["metrics"]["official"]["accuracy"]
        print(f"  {name} ({role}): official accuracy {acc:.4f}, {m['bytes'] / 1e6:.1f} MB")
    return 0


def _cmd_bench(args) -> int:
    from tumorlens.config import load_config
    from tumorlens.experiments.bench import format_table, run_bench
    from tumorlens.utils.files import write_json

    res = run_bench(
        load_config(args.profile), args.model, args.ensemble or (), peer=not args.no_peer, show_progress=not args.quiet
    )
    print(format_table(res))
    if args.out:
        from tumorlens.experiments.collect import MANIFEST, write_manifest

        out = write_json(args.out, res, schema="bench")
        if (out.parent / MANIFEST).is_file():  # published results: the manifest lists the new file
            write_manifest(out.parent, args.profile, files=[out])
        print(f"wrote {out}")
    return 0


def _cmd_collect(args) -> int:
    from tumorlens.experiments.collect import collect

    print(f"results collected in {collect(args.profile, only=args.only or None)}")
    return 0


def _cmd_book(args) -> int:
    from tumorlens.book.build import build_book

    index = build_book(args.profile, strict=args.strict, run=args.run, workers=args.workers)
    print(f"book built: {index}")
    return 0


def _results_command(sub, name: str, help: str) -> argparse.ArgumentParser:
    """A command that writes ``results/<profile>/<name>.json``: --profile, --no-write, --quiet."""
    p = sub.add_parser(name, help=help)
    p.add_argument("--profile", default=DEFAULT_PROFILE)
    p.add_argument("--no-write", action="store_true", help=f"do not write results/<profile>/{name}.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tumorlens",
        description="Brain MRI tumour classification toolkit (research use only; not a diagnostic device).",
    )
    p.add_argument("--version", action="version", version=f"tumorlens {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset: scan, audit, fetch, phantoms").add_subparsers(
        dest="action", required=True
    )
    s = data.add_parser("scan", help="count usable images per split and class; name each bad file")
    s.add_argument("path")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--no-cache", action="store_true", help="decode every file again")
    s.set_defaults(func=_cmd_data_scan)

    a = data.add_parser("audit", help="leakage audit: exact and near duplicates across splits")
    a.add_argument("path")
    a.add_argument("--json", action="store_true")
    a.add_argument("--quiet", action="store_true")
    a.add_argument("--no-cache", action="store_true")
    a.add_argument("--out", help="folder to write audit.json and dedup_test.csv into")
    a.add_argument("--profile", default=DEFAULT_PROFILE, help="take the audit thresholds from this profile")
    a.add_argument(
        "--hash-distance", type=_non_negative_int, default=None, help="largest perceptual-hash distance of a pair"
    )
    a.add_argument("--correlation", type=_unit_interval, default=None, help="smallest thumbnail correlation, (0, 1]")
    a.set_defaults(func=_cmd_data_audit)

    f = data.add_parser("fetch", help="download the Kaggle dataset with kagglehub")
    f.add_argument("--dest", default=None, help="where the dataset should appear (default data/brain-tumor-mri)")
    f.set_defaults(func=_cmd_data_fetch)

    ph = data.add_parser("phantoms", help="write the synthetic phantom dataset (with masks)")
    ph.add_argument("out")
    ph.add_argument("--size", type=_positive_int, default=64)
    ph.add_argument("--train-per-class", type=_positive_int, default=60)
    ph.add_argument("--test-per-class", type=_positive_int, default=15)
    ph.add_argument("--duplicates", type=_non_negative_int, default=4)
    ph.add_argument("--seed", type=int, default=42)
    ph.set_defaults(func=_cmd_data_phantoms)

    mo = sub.add_parser("models", help="parameters and FLOPs of MAB, ResPath, SBR vs SE and CBAM on each backbone")
    mo.add_argument("--json", action="store_true")
    mo.add_argument("--image-size", type=_positive_int, default=224)
    mo.add_argument("--backbones", nargs="*", help="default: all")
    mo.set_defaults(func=_cmd_models)

    t = sub.add_parser("train", help="train one configuration into its run directory")
    t.add_argument("--profile", default=DEFAULT_PROFILE)
    t.add_argument("--backbone", default=None)
    t.add_argument("--modules", nargs="*", default=None, help="any of mab respath sbr (se cbam)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override settings, e.g. train.prefix_cache=false")
    t.add_argument("--out", default=None, help="run directory (default runs/<profile>/<variant>/seed-<n>)")
    t.set_defaults(func=_cmd_train)

    r = sub.add_parser("run", help="execute the notebooks of a profile with papermill (resumable)")
    r.add_argument("--profile", default=DEFAULT_PROFILE)
    r.add_argument(
        "--part",
        choices=PLAN_PARTS,
        default=None,
        nargs="+",
        help="parts of the plan, each timed on its own: headline (self-contained: data, RQ1 over every seed and "
        "each module alone, ensembles), supplementary (the rest of the paper, explanations included; reads "
        "headline runs), study (the lesion study's retrained candidates). Several run in turn and are timed "
        "together too (make reproduce: --part headline supplementary). Default: every job",
    )
    r.add_argument(
        "--only",
        nargs="*",
        help="notebook stems (02_train) or job names (efficientnet_lite1@cf/seed-43) to run (default: all)",
    )
    r.add_argument("--force", action="store_true", help="rerun jobs whose outputs are complete and current")
    r.add_argument(
        "--status",
        action="store_true",
        help="list each job as current (in runs/), published (current in results/<profile>/) or to run, with why; "
        "run nothing",
    )
    r.add_argument("--json", action="store_true", help="with --status: a JSON list of {job, state, why}")
    r.add_argument(
        "--workers", type=_positive_int, default=None, help="run independent jobs side by side on N local Dask workers"
    )
    r.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run the jobs on an existing Dask cluster")
    r.set_defaults(func=_cmd_run)

    pr = sub.add_parser("predict", help="classify your own scans (JPEG, PNG, DICOM); research use only")
    pr.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    pr.add_argument(
        "--model",
        default=None,
        help="a run directory or a .keras file (default: the published model, models/cpu)",
    )
    pr.add_argument(
        "--ensemble",
        nargs="*",
        help="more run directories: soft-vote their probabilities with --model's; `published`: the published ensemble",
    )
    pr.add_argument("--explain", action="store_true", help="write a class activation map overlay per image")
    pr.add_argument(
        "--segment", action="store_true", help="write a weak tumour mask per image (the map and mask the run adopted)"
    )
    pr.add_argument(
        "--segmentation",
        default=None,
        metavar="DIR",
        help="a folder with segment.json from the explain step (default: found beside the model; see docs)",
    )
    pr.add_argument(
        "--guard",
        default=None,
        metavar="FILE",
        help="input-guard statistics fitted for --model (a guard.npz); the published model has its own",
    )
    pr.add_argument("--out", default=None, help="output folder (default runs/predict/<time>); never an input folder")
    pr.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an earlier predict run's --out, removing that run's results first (other files stay)",
    )
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=_cmd_predict)

    be = sub.add_parser(
        "bench", help="benchmark: tumorlens vs the peer package detect-tumor on the same Testing images"
    )
    be.add_argument("--profile", default=DEFAULT_PROFILE)
    be.add_argument(
        "--model", default="published", help="a run directory, or published (the default): the published models"
    )
    be.add_argument("--ensemble", nargs="*", help="run directories to soft-vote")
    be.add_argument("--out", default=None, help="write the result as JSON here")
    be.add_argument("--no-peer", action="store_true", help="skip detect-tumor")
    be.add_argument("--quiet", action="store_true")
    be.set_defaults(func=_cmd_bench)

    ex = _results_command(sub, "external", "score the published models on another release's images (BRISC 2025)")
    ex.add_argument("--folder", nargs="*", default=None, help="class-per-folder sets (default: external.folders)")
    ex.add_argument(
        "--no-runs",
        dest="runs",
        action="store_false",
        help="score the published models only, not every current run of the profile (and its ensemble)",
    )
    ex.set_defaults(func=_cmd_external)

    ev = sub.add_parser("evaluate", help="tests of a model beyond its scores").add_subparsers(
        dest="test", required=True
    )
    le = _results_command(ev, "lesion", "the lesion-removal test: remove the expert-marked lesion, then classify")
    le.add_argument("--model", nargs="*", default=None, metavar="RUN", help="trained runs to test as well")
    le.add_argument("--no-published", action="store_true", help="test only the --model runs")
    le.add_argument(
        "--masks", default=None, metavar="DIR", help="BRISC-layout images/ + masks/ (default: segment.masks)"
    )
    le.add_argument("--dilation", type=float, default=0.03, help="the lesion grown by this share of the side")
    le.add_argument("--methods", nargs="+", default=["telea", "ns", "ring"], choices=["telea", "ns", "ring"])
    le.add_argument("--out", default=None, help="the record's file (default results/<profile>/lesion.json)")
    le.add_argument("--images-out", default=None, metavar="DIR", help="also write every removed/control image here")
    le.add_argument(
        "--validation",
        action="store_true",
        help="the test on the Kaggle validation split (published weak masks; where models may be chosen)",
    )
    le.set_defaults(func=_cmd_evaluate_lesion)

    ve = _results_command(sub, "verify", "retrain a published recipe and compare it with the published record")
    ve.add_argument("--recipe", default=None, help="<variant>/seed-<n> (default: the published single model)")
    ve.set_defaults(func=_cmd_verify)

    pu = sub.add_parser("publish", help="write the profile's best model, its ensemble and mask network for predict")
    pu.add_argument("--profile", default=DEFAULT_PROFILE)
    pu.add_argument("--single", default=None, help="the single model's run (default: the ensemble's best member)")
    pu.add_argument("--ensemble", nargs="*", default=None, help="member runs (default: the ensemble step's)")
    pu.add_argument("--segmentation", default=None, help="the explain step's folder (default: runs/<profile>/explain)")
    pu.add_argument("--force", action="store_true", help="replace published models of the same recipes")
    pu.set_defaults(func=_cmd_publish)

    co = sub.add_parser("collect", help="gather a profile's runs into results/<profile>/ (compact, committable)")
    co.add_argument("--profile", default=DEFAULT_PROFILE)
    co.add_argument(
        "--only",
        nargs="*",
        metavar="PART",
        help="refresh only these parts (variants, smoke_backbones, data, ensembles, segmentation, robustness)",
    )
    co.set_defaults(func=_cmd_collect)

    b = sub.add_parser("book", help="run the profile's notebooks and build the Jupyter Book")
    b.add_argument("--profile", default=DEFAULT_PROFILE)
    b.add_argument("--strict", action="store_true", help="turn Sphinx warnings into errors (-W)")
    g = b.add_mutually_exclusive_group()
    g.add_argument(
        "--run",
        dest="run",
        action="store_true",
        default=None,
        help="run the profile's experiments first (default: smoke yes, others only without results)",
    )
    g.add_argument("--no-run", dest="run", action="store_false", help="render from results/<profile> only")
    b.add_argument("--workers", type=_positive_int, default=None, help="run the notebooks on N local Dask workers")
    b.set_defaults(func=_cmd_book)

    c = sub.add_parser("config", help="settings").add_subparsers(dest="action", required=True)
    cs = c.add_parser("show", help="print the resolved settings of a profile")
    cs.add_argument("--profile", default=DEFAULT_PROFILE)
    cs.set_defaults(func=_cmd_config_show)
    return p


def entry() -> int:
    """The ``tumorlens`` command: `main`, with TensorFlow's start-up chatter filtered out of this
    process's stderr and the notebook kernels it starts (`tumorlens.utils.quiet`)."""
    quiet_native_logs()
    return main()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command. Exit status: the command's own (0 done; predict 1 when no image
    could be processed, verify 1 outside the seed spread), 2 for a usage error or any error the library
    reports (`tumorlens.errors`, a file that cannot be read or written, a bad value) -- printed as one line,
    ``tumorlens: error: ...``, as argparse prints its own --, 130 when interrupted."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TumorlensError, OSError, ValueError, RuntimeError) as exc:  # OSError: FileNotFound, IsADirectory, ...
        print(f"tumorlens: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tumorlens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(entry())
