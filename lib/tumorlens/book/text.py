"""Words for the book from measured results: differences with intervals, verdicts, the module-cost claim."""

from __future__ import annotations

__all__ = [
    "ci_text",
    "pct_ci_text",
    "diff_text",
    "verdict",
    "find_row",
    "module_cost_claim",
    "explain_glue",
    "grabcut_words",
    "rq3_words",
    "explain_seeds_words",
    "failure_words",
    "share_text",
    "run_words",
    "EXPERT_SOURCE",
    "SOURCE_NOTE",
]

#: Where the Kaggle images of the book's figures come from.
SOURCE_NOTE = "Images: Kaggle 'Brain Tumor MRI Dataset' (Masoud Nickparvar), public domain (CC0)."

#: Where the expert-mask galleries' images come from (`tumorlens.experiments.figures` renders them).
EXPERT_SOURCE = (
    "Images and expert masks: BRISC 2025 (Fateh et al., 2025), test split, rendered here as 160 px tiles with "
    "this project's maps and masks (the raw files are not part of the repository)."
)


def ci_text(
    value: float, lo: float, hi: float, *, digits: int = 4, ci_digits: int | None = None, signed: bool = False
) -> str:
    """``0.9703 [0.960, 0.979]``: a value and its 95% interval (``signed``: ``+0.0099 [+0.004, +0.017]``).
    The interval gets one digit fewer than the value unless ``ci_digits`` says otherwise."""
    s = "+" if signed else ""
    c = digits - 1 if ci_digits is None else ci_digits
    return f"{value:{s}.{digits}f} [{lo:{s}.{c}f}, {hi:{s}.{c}f}]"


def pct_ci_text(value: float, lo: float, hi: float, *, signed: bool = False) -> str:
    """A rate and its 95% interval in percent, ``67% [60%, 73%]``; ``signed``: a difference in
    percentage points, ``+54 points [+46, +61]``."""
    if signed:
        return f"{100 * value:+.0f} points [{100 * lo:+.0f}, {100 * hi:+.0f}]"
    return f"{value:.0%} [{lo:.0%}, {hi:.0%}]"


def module_cost_claim(blocks: list[dict], backbone: str) -> str:
    """Words for the paper's claim "fewer parameters than SE or CBAM", per module, from the measured
    ``block_costs.json`` rows of ``backbone``."""
    on = {b["block"]: b["parameters"] for b in blocks if b["backbone"] == backbone}
    if not {"se", "cbam"} <= set(on):
        return "not measured"
    bound = min(on["se"], on["cbam"])
    return "; ".join(
        f"{name} has {on[b]:,} parameters — {'fewer than' if on[b] < bound else 'not fewer than'} "
        f"SE ({on['se']:,}) and CBAM ({on['cbam']:,})"
        for b, name in (("mab", "MAB"), ("respath", "ResPath"), ("sbr", "SBR"))
        if b in on
    )


def diff_text(row: dict | None, *, p: bool = False) -> str:
    """A comparison row's difference and 95% CI, ``+0.0099 [+0.004, +0.017]`` (with ``p``: and its
    McNemar p-value); ``n/a`` for a missing row."""
    if row is None:
        return "n/a"
    text = ci_text(row["diff"], row["ci_lo"], row["ci_hi"], signed=True)
    return text + (f", McNemar p = {row['p_mcnemar']:.2g}" if p else "")


def verdict(row: dict) -> str:
    """Words for a comparison row: whether the 95% CI of the difference excludes zero."""
    lo, hi = row["ci_lo"], row["ci_hi"]
    if lo > 0:
        return "better (the 95% interval of the difference excludes zero)"
    if hi < 0:
        return "worse (the 95% interval of the difference excludes zero)"
    return "not distinguishable (the 95% interval of the difference includes zero)"


def find_row(rows: list[dict], **match) -> dict | None:
    """The first comparison row whose fields equal ``match`` (e.g. test_set="dedup", metric="accuracy")."""
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def grabcut_words(params: dict) -> str:
    """How the adopted map's GrabCut was seeded (``segment.json``'s params), in words."""
    if params.get("seeds") == "mask":
        return (
            f"seeded by the binarised map: its core (eroded by {params['core']} px) sure foreground, the rest "
            f"probable foreground, a {params['ring']} px ring around it probable background"
        )
    if {"hi", "mid", "lo"} <= set(params):
        return (
            f"seeded by the map's levels: >= {params['hi']} sure foreground, >= {params['mid']} probable "
            f"foreground, >= {params['lo']} probable background inside the head"
        )
    return "not tuned"


def explain_glue(summary: dict, model_run: str = "") -> dict[str, str]:
    """The explain chapter's numbers as text, by glue name, from its ``summary.json``: the adopted
    mask's scores, the paper's row, the pointing-game baseline, the network's training, the choice."""
    rows = summary.get("methods") or []
    adopted = find_row(rows, map=summary.get("map"), mask=summary.get("mask"))
    paper = find_row(rows, paper=True)
    overall = summary["per_class"]["all"]
    kind_words = {"cam": "binarised", "grabcut": "refined by GrabCut"}
    out = {
        "seg_source": summary["source"],
        "seg_model": summary.get("model", model_run),
        "seg_model_choice": (
            f"chosen as the CNN with the best validation macro-F1, {summary['model_choice']['val_macro_f1']:.4f}, "
            f"of {summary['model_choice']['considered']} finished runs"
            if summary.get("model_choice")
            else "given"
        ),
        "seg_n_report": str(summary["n_report"]),
        "seg_n_tune": str(summary["n_tune"]),
        "pointing_tol": str(summary["pointing_tolerance_px"]),
        "centre_pointing": f"{overall['centre_pointing']:.0%}",
        "centre_pointing_near": f"{overall['centre_pointing_near']:.0%}",
    }
    if adopted:
        seeds = f" ({grabcut_words(summary.get('params') or {})})" if adopted["mask"] == "grabcut" else ""
        out |= {
            "adopted": f"{adopted['map']}, {kind_words[adopted['mask']]}{seeds}",
            "adopted_dice": ci_text(adopted["dice_mean"], adopted["dice_lo"], adopted["dice_hi"], digits=3),
            "adopted_dice_median": f"{adopted['dice_median']:.3f}",
            "adopted_pointing": pct_ci_text(adopted["pointing"], adopted["pointing_lo"], adopted["pointing_hi"]),
            "adopted_pointing_vs_centre": pct_ci_text(
                adopted["pointing_vs_centre"],
                adopted["pointing_vs_centre_lo"],
                adopted["pointing_vs_centre_hi"],
                signed=True,
            ),
            "adopted_vs_paper": ci_text(
                adopted["dice_vs_paper"],
                adopted["dice_vs_paper_lo"],
                adopted["dice_vs_paper_hi"],
                digits=3,
                signed=True,
            ),
            "adopted_ms": f"{adopted['ms_per_image']:.0f}" if adopted.get("ms_per_image") is not None else "n/a",
        }
    if paper:
        out |= {
            "paper_dice": ci_text(paper["dice_mean"], paper["dice_lo"], paper["dice_hi"], digits=3),
            "paper_pointing": f"{paper['pointing']:.0%}",
        }
    best = summary.get("best_on_tuning")
    out["best_on_tuning"] = (
        f"{best['map']}, {kind_words[best['mask']]} (tuning-half Dice {best['tune_dice']:.3f})" if best else "not tuned"
    )
    net = summary.get("network")
    if net:
        out |= {
            "net_from": net["pseudo_masks_from"],
            "net_n_train": f"{net['n_train']:,}",
            "net_n_tumour": f"{net['n_tumour']:,}",
            "net_empty": f"{net['n_empty_pseudo_masks']:,}",
            "net_area": f"{net['pseudo_mask_area']:.1%}",
            "net_epochs": str(net["epochs"]),
            "net_params": f"{net['decoder_parameters']:,}",
            "net_minutes": f"{sum(net['seconds'].values()) / 60:.1f}",
            "net_rounds": network_rounds_words(net),
        }
    return out


def network_rounds_words(net: dict) -> str:
    """How the weak-mask network was trained, from ``network.json``: one map or one per tumour class,
    and each self-training round's pseudo-masks (their mean area on tumour images, empty ones, and the
    tuning-half Dice of the network they came from)."""
    head = "one map per tumour class" if net.get("per_class") else "one class-agnostic map"
    rounds = net.get("rounds") or []
    if len(rounds) <= 1:
        return f"{head}, one round (no self-training)"
    parts = []
    for prev, r in zip([None, *rounds], rounds):
        src = r["pseudo_masks"] + (
            f" (tuning-half Dice {prev['tune_dice']:.3f})" if prev and "tune_dice" in prev else ""
        )
        parts.append(
            f"round {r['round']} learned {src}: {r['pseudo_mask_area']:.1%} of a tumour image, "
            f"{r['n_empty_pseudo_masks']:,} empty"
        )
    return f"{head}, {len(rounds)} rounds of self-training — " + "; ".join(parts)


_RQ3_KEYS = (
    "seg_source",
    "paper_dice",
    "paper_pointing",
    "adopted",
    "adopted_dice",
    "adopted_vs_paper",
    "adopted_pointing",
    "centre_pointing",
    "adopted_pointing_vs_centre",
)


def rq3_words(rq3: dict | None) -> dict[str, str]:
    """RQ3's answer as text from ``rq.json["rq3"]`` (the explain step's summary and the paired GrabCut
    difference of the adopted map); every key is present, ``not measured`` / ``n/a`` without results."""
    if not rq3:
        return {k: "not measured" if k == "seg_source" else "n/a" for k in (*_RQ3_KEYS, "grabcut_diff", "verdict")}
    words = explain_glue(rq3["summary"])
    out = {k: words.get(k, "n/a") for k in _RQ3_KEYS}
    d = rq3.get("grabcut_minus_cam")
    if d:
        out["grabcut_diff"] = ci_text(d["mean_diff"], d["lo"], d["hi"], digits=3, signed=True)
        out["verdict"] = (
            "GrabCut helps"
            if d["lo"] > 0
            else "GrabCut hurts"
            if d["hi"] < 0
            else "GrabCut makes no clear difference (the 95% interval includes zero)"
        )
    else:
        out["grabcut_diff"], out["verdict"] = "n/a", "not measured"
    return out


def share_text(x: float) -> str:
    """A share as a whole percent, or to a tenth below one percent (one image in 215 is not 0%)."""
    return f"{x:.1%}" if 0 < x < 0.01 else f"{x:.0%}"


def failure_words(failures: dict | None) -> str:
    """Where the adopted weak mask fails (``rq.json["rq3"]["failures"]``) in one paragraph: the shares of the
    failure categories over all report images, the class and view with the lowest mean Dice and what fails
    there, and the class whose masks most often find the lesion but outline it wrongly."""
    if not failures or not failures.get("all"):
        return "not measured (no per-image scores of the adopted mask in these results)"
    views = {"ax": "axial", "co": "coronal", "sa": "sagittal"}
    share = share_text
    a = failures["all"]
    worst = min(failures["by_class_view"], key=lambda d: d["dice_mean"])
    outline = max(failures["by_class"], key=lambda d: d["outline"])
    return (
        f"of the {a['n']} report-half images, {a['good']:.0%} get a good mask (Dice ≥ {failures['good_dice']}); "
        f"on {a['outline']:.0%} the map's peak lies on the lesion but the outline is off, on {a['missed']:.0%} the "
        f"peak lies off the lesion, and {share(a['no_tumour'])} are called no tumour. The weakest group is "
        f"{worst['class']} on {views.get(worst['view'], worst['view'])} slices (mean Dice {worst['dice_mean']:.2f}, "
        f"{worst['n']} images: {worst['missed']:.0%} missed, {worst['outline']:.0%} outlined wrongly); "
        f"{outline['class']} masks most often find the lesion and miss its outline ({outline['outline']:.0%})"
        + (
            f". Of the outlines that are off, {a['outline_too_large'] / a['outline']:.0%} are too large (the mask "
            f"spills over the lesion) and {a['outline_too_small'] / a['outline']:.0%} too small"
            if a.get("outline") and "outline_too_large" in a
            else ""
        )
    )


def explain_seeds_words(seeds: dict | None, target: float = 0.5) -> str:
    """The explain step over the explained recipe's seeds (``rq.json["rq3"]["seeds"]``) in one sentence:
    the adopted Dice per seed, its mean ± sd, how many seeds reach ``target`` and the lowest interval;
    ``not measured`` without replicates (``reproduce.explain_seeds``)."""
    rows = (seeds or {}).get("rows") or []
    if len(rows) < 2:
        return "not measured (the profile does not rerun the explain step over seeds: reproduce.explain_seeds)"
    d, p = seeds["dice_mean"], seeds["pointing"]
    per = ", ".join(f"seed {r['seed']} {r['dice_mean']:.3f}" for r in rows)
    reach = sum(r["dice_mean"] >= target for r in rows)
    low = min(rows, key=lambda r: r["dice_lo"])
    gc = [r for r in rows if r.get("gc_minus_map") is not None]
    gc_words = (
        f"; GrabCut adds to the map on {sum(r['gc_minus_map_lo'] > 0 for r in gc)} of {len(gc)} seeds "
        "(paired interval above zero)"
        if gc
        else ""
    )
    return (
        f"Over {len(rows)} seeds of {rows[0]['model'].split('/')[0]} the adopted mask scores Dice {per} "
        f"(mean {d['mean']:.3f} ± {d['sd']:.3f}); {reach} of {len(rows)} reach {target:.2f}, and the lowest "
        f"interval starts at {low['dice_lo']:.3f} (seed {low['seed']}). Pointing: {p['mean']:.0%} ± {p['sd']:.0%}"
        f"{gc_words}."
    )


#: The head poolings (`tumorlens.config.POOLINGS`) in words.
POOLING_NAMES = {"gap": "global average", "lse": "log-sum-exp", "topk": "top-k"}


def localisation_words(ablation: dict | None, map_name: str | None = None) -> str:
    """The localisation ablation (``localisation.json``) in one sentence per pooled run, for the
    configured map (``map_name``; default: the last map of the rows): its classification and
    localisation against the reference run (the standard head); ``not measured`` without results."""
    rows = (ablation or {}).get("rows") or []
    if not rows:
        return "not measured (the profile plans no localisation ablation: reproduce.poolings)"
    map_name = map_name if any(r["map"] == map_name for r in rows) else rows[-1]["map"]
    rows = [r for r in rows if r["map"] == map_name]
    ref, others = rows[0], rows[1:]
    names = POOLING_NAMES

    def acc(r: dict) -> str:
        return "n/a" if r.get("accuracy") is None else f"{r['accuracy']:.4f}"

    def kept(r: dict) -> bool:  # the bar: no worse than 0.5 points below the standard head
        return None not in (r.get("accuracy"), ref.get("accuracy")) and r["accuracy"] >= ref["accuracy"] - 0.005

    parts, adopt = [], []
    for r in others:
        p, d = r["pointing_diff"], r["dice_grabcut_diff"]
        better = d["lo"] > 0 and p["lo"] >= 0
        dice_word = "better" if d["lo"] > 0 else "worse" if d["hi"] < 0 else "no clear difference"
        parts.append(
            f"the {names.get(r['pooling'], r['pooling'])} head: official accuracy {acc(r)} (standard {acc(ref)}; "
            f"{'kept' if kept(r) else 'more than 0.5 points lower'}), "
            f"pointing {r['pointing']['value']:.0%} vs {ref['pointing']['value']:.0%} "
            f"({pct_ci_text(p['diff'], p['lo'], p['hi'], signed=True)}), Dice of map + GrabCut "
            f"{r['dice_grabcut']['value']:.3f} vs {ref['dice_grabcut']['value']:.3f} "
            f"({ci_text(d['diff'], d['lo'], d['hi'], digits=3, ci_digits=3, signed=True)}: {dice_word})"
        )
        if better and kept(r):
            adopt.append(names.get(r["pooling"], r["pooling"]))
    verdict = (
        f" Candidates to adopt (better Dice, pointing no worse, accuracy kept): {', '.join(adopt)}."
        if adopt
        else " No head localises better while keeping accuracy: the standard head stays."
    )
    return f"With {map_name} on the {ref['n_report']} report images, " + "; ".join(parts) + "." + verdict


def view_mix_glue(mix: dict) -> dict[str, str]:
    """The data chapter's view-and-sequence counts in words (`tumorlens.data.annotations.view_sequence_mix`):
    ``mix_nt_axial`` / ``mix_nt_t1`` for the no-tumour slices, ``mix_tumour_axial`` / ``mix_tumour_t1``
    for the three tumour classes together, each ``"k of n"``."""
    nt = mix["notumor"]
    tumour = [m for cls, m in mix.items() if cls != "notumor"]

    def of(group: list[dict], key: str, value: str) -> str:
        return f"{sum(m[key][value]['k'] for m in group)} of {sum(m['n'] for m in group)}"

    return {
        "mix_nt_axial": of([nt], "view", "axial"),
        "mix_nt_t1": of([nt], "sequence", "T1"),
        "mix_tumour_axial": of(tumour, "view", "axial"),
        "mix_tumour_t1": of(tumour, "sequence", "T1"),
    }


#: The backbones' names in prose.
BACKBONE_NAMES = {
    "efficientnet_lite0": "EfficientNet-Lite0",
    "efficientnet_lite1": "EfficientNet-Lite1",
    "efficientnet_lite2": "EfficientNet-Lite2",
    "mobilenetv2": "MobileNetV2",
    "efficientnetb0": "EfficientNet-B0",
    "vgg16": "VGG16",
    "vit": "the minimal ViT",
}
MODULE_NAMES = {"mab": "MAB", "respath": "ResPath", "sbr": "SBR"}


def run_words(name: str) -> str:
    """A run name (``efficientnet_lite1/seed-43``, ``efficientnet_lite0+mab+respath+sbr/seed-43``) in
    words: ``EfficientNet-Lite1, seed 43``; ``EfficientNet-Lite0 + MAB + ResPath + SBR, seed 43``."""
    variant, _, seed = name.partition("/seed-")
    bb, *mods = variant.split("+")
    bb, _, tag = bb.partition("@")
    words = " + ".join([BACKBONE_NAMES.get(bb, bb), *[MODULE_NAMES.get(m, m) for m in mods]])
    return f"{words}{f' ({tag})' if tag else ''}" + (f", seed {seed}" if seed else "")
