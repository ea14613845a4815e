"""Words for the book from measured results: differences with intervals, verdicts, the module-cost claim."""

from __future__ import annotations

__all__ = ["ci_text", "diff_text", "verdict", "find_row", "module_cost_claim"]


def ci_text(
    value: float, lo: float, hi: float, *, digits: int = 4, ci_digits: int | None = None, signed: bool = False
) -> str:
    """``0.9703 [0.960, 0.979]``: a value and its 95% interval (``signed``: ``+0.0099 [+0.004, +0.017]``).
    The interval gets one digit fewer than the value unless ``ci_digits`` says otherwise."""
    s = "+" if signed else ""
    c = digits - 1 if ci_digits is None else ci_digits
    return f"{value:{s}.{digits}f} [{lo:{s}.{c}f}, {hi:{s}.{c}f}]"


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
