"""Experiment settings: `_config.yml` -> one frozen, validated `Config`.

The file has a ``base`` section and named ``profiles`` that override it key by key::

    cfg = load_config(profile="smoke")
    cfg.data.image_size            # 64
    cfg = cfg.override({"model.backbone": "vgg16", "seed": 1})

Every key is declared below with its type and allowed values; an unknown key or a bad value
raises `ConfigError` naming the key path and the value received. Two environment variables
override the file: ``TUMORLENS_DATA`` (``data.root``) and ``TUMORLENS_RUNS`` (``paths.runs``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from tumorlens import paths
from tumorlens.errors import ConfigError

__all__ = [
    "TRACE_ENV",
    "trace_sections",
    "check_modules",
    "variant_name",
    "BACKBONES",
    "CAM_LAYER_SETS",
    "CAM_METHODS",
    "CLASSES",
    "MASK_KINDS",
    "MODULES",
    "PAPER_MODULES",
    "POOLINGS",
    "Config",
    "ConfigError",
    "load_config",
    "profiles",
    "settings_fingerprint",
]

#: Class names in code and files: the dataset's own folder names, in label order.
CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
#: Backbones the model registry provides (see `tumorlens.backbones`).
BACKBONES: tuple[str, ...] = (
    "mobilenetv2",
    "efficientnetb0",
    "vgg16",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "vit",
)
#: The paper's three modules, in the order the classifier applies them.
PAPER_MODULES: tuple[str, ...] = ("mab", "respath", "sbr")
#: Class activation map methods (`tumorlens.explain.cam`) and the layer sets they read.
CAM_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "layercam")
CAM_LAYER_SETS: tuple[str, ...] = ("top", "stride16", "stride8", "fusion")
#: What a weak mask is made from: the binarised map, the map refined by GrabCut, the network trained
#: on CAM + GrabCut pseudo-masks (`tumorlens.explain.refine`) binarised or refined by GrabCut, or
#: ``auto``: the row of the explain step's comparison with the best Dice on the tuning half.
MASK_KINDS: tuple[str, ...] = ("cam", "grabcut", "network", "network+grabcut", "auto")
#: How the classifier's head pools the feature map: global average (the paper's) or a pooling of the
#: strongest locations (`tumorlens.models.blocks.LocalPooling`, the localisation ablation).
POOLINGS: tuple[str, ...] = ("gap", "lse", "topk")
#: The paper's modules and the two baselines they are compared with.
MODULES: tuple[str, ...] = (*PAPER_MODULES, "se", "cbam")


def check_modules(modules: Iterable[str]) -> tuple[str, ...]:
    """``modules`` checked (each in `MODULES`, none repeated) and in canonical order."""
    mods = tuple(modules)
    bad = [m for m in mods if m not in MODULES]
    if bad:
        raise ValueError(f"modules must be a subset of {', '.join(MODULES)}; received {list(mods)!r}")
    if len(set(mods)) != len(mods):
        raise ValueError(f"modules repeat an entry; received {list(mods)!r}")
    return tuple(m for m in MODULES if m in mods)


def variant_name(backbone: str, modules: Sequence[str] = ()) -> str:
    """``efficientnet_lite0+mab+respath+sbr`` — the run-directory and model name of a variant (a string
    helper, here so that planning runs does not import TensorFlow)."""
    return "+".join([backbone, *check_modules(modules)])


def _spec(
    default: Any = None,
    *,
    choices: tuple | None = None,
    lo: float | None = None,
    hi: float | None = None,
    factory: Any = None,
    doc: str = "",
    check: Any = None,
    added: bool = False,
) -> Any:
    """A setting: its default, allowed values (``choices``, ``lo``/``hi``), a description, and
    ``check(value) -> str | None``, an extra rule returning what is expected when the value breaks it.

    ``added``: a setting added after runs were recorded, whose default does what those runs did. At
    its default it is left out of `settings_fingerprint`, so adding it leaves finished runs current;
    any other value changes the fingerprint like every setting."""
    meta = {"choices": choices, "lo": lo, "hi": hi, "doc": doc, "check": check, "added": added}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _cam_name_problem(name: str) -> str | None:
    """What a map setting name (``method@layers[+flip]``) should look like, or None when it is fine."""
    method, _, layers = name.removesuffix("+flip").partition("@")
    if method in CAM_METHODS and (layers or "top") in CAM_LAYER_SETS:
        return None
    return f"method@layers[+flip] with method in {'|'.join(CAM_METHODS)} and layers in {'|'.join(CAM_LAYER_SETS)}"


@dataclass(frozen=True)
class PhantomConfig:
    train_per_class: int = _spec(60, lo=2, doc="synthetic Training images per class")
    test_per_class: int = _spec(15, lo=1, doc="synthetic Testing images per class")
    duplicates: int = _spec(4, lo=0, doc="Testing images that are re-contrasted Training copies")


@dataclass(frozen=True)
class DataConfig:
    source: str = _spec("kaggle", choices=("kaggle", "phantoms"))
    root: str | None = _spec(None, doc="dataset folder; null -> $TUMORLENS_DATA or data/brain-tumor-mri")
    split: str = _spec("official", choices=("official", "paper", "grouped"))
    seed: int = _spec(42, lo=0, hi=2**31 - 1, doc="data seed (splits, phantoms): fixed across training seeds")
    val_fraction: float = _spec(0.1, lo=0.01, hi=0.5)
    holdout_fraction: float = _spec(0.2, lo=0.02, hi=0.5)
    image_size: int = _spec(224, lo=32, hi=1024)
    batch_size: int = _spec(32, lo=1, hi=4096)
    cache: bool = _spec(True)
    phantoms: PhantomConfig = _spec(factory=PhantomConfig)


@dataclass(frozen=True)
class AugmentConfig:
    rotation: float = _spec(0.05, lo=0.0, hi=3.1416, doc="radians, +-")
    zoom: float = _spec(0.1, lo=0.0, hi=0.9)
    translation: float = _spec(0.05, lo=0.0, hi=0.5)
    contrast: float = _spec(0.1, lo=0.0, hi=1.0)
    # intensity remapping (`tumorlens.data.intensity.RandomIntensity`): another scanner or release
    gamma: float = _spec(0.0, lo=0.0, hi=2.0, doc="max |log gamma| of a random gamma remap (0: off)", added=True)
    bias_field: float = _spec(
        0.0, lo=0.0, hi=2.0, doc="max coefficient of a random smooth multiplicative field (0: off)", added=True
    )
    noise: float = _spec(0.0, lo=0.0, hi=0.5, doc="Gaussian noise sd as a fraction of 255 (0: off)", added=True)
    invert: float = _spec(
        0.0,
        lo=0.0,
        hi=1.0,
        doc="probability of inverting an image's intensities inside the head (T2 <-> T1-like contrast; 0: off)",
        added=True,
    )
    gin: float = _spec(
        0.0,
        lo=0.0,
        hi=1.0,
        doc="probability of a random shallow-convolution contrast remap of an image (GIN; 0: off)",
        added=True,
    )


@dataclass(frozen=True)
class AuditConfig:
    thumb_size: int = _spec(32, lo=8, hi=128)
    hash_distance: int = _spec(12, lo=0, hi=64)
    correlation: float = _spec(0.90, lo=0.0, hi=1.0)


@dataclass(frozen=True)
class ViTConfig:
    patch_size: int = _spec(16, lo=2, hi=64)
    dim: int = _spec(128, lo=8, hi=1024)
    depth: int = _spec(4, lo=1, hi=24)
    heads: int = _spec(4, lo=1, hi=16)
    mlp_dim: int = _spec(256, lo=8, hi=4096)
    dropout: float = _spec(0.1, lo=0.0, hi=0.9)


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = _spec("efficientnet_lite0", choices=BACKBONES)
    weights: str = _spec(
        "imagenet",
        doc="imagenet | none | a path to a weights file",
        check=lambda v: (
            None
            if (v in ("imagenet", "none") or "/" in v or "\\" in v or v.endswith((".h5", ".keras", ".npz")))
            else "imagenet, none or a path to a weights file (.h5, .weights.h5, .keras, .npz)"
        ),
    )
    modules: tuple[str, ...] = _spec((), choices=MODULES)
    dropout: float = _spec(0.3, lo=0.0, hi=0.95)
    pooling: str = _spec(
        "gap",
        choices=POOLINGS,
        doc="the head's pooling: gap (global average, the paper's) | lse | topk (the strongest locations decide)",
        added=True,
    )
    vit: ViTConfig = _spec(factory=ViTConfig)


@dataclass(frozen=True)
class CounterfactualConfig:
    share: float = _spec(
        0.0,
        lo=0.0,
        hi=1.0,
        doc="share of the trusted lesion masks of tumour training images whose lesion is removed to make a "
        "no-tumour image (0: off; tumorlens.experiments.counterfactual)",
    )
    keep: float = _spec(
        1.0, lo=0.01, hi=1.0, doc="the most confident share of the weak lesion masks trusted (by filter)"
    )
    filter: str = _spec("p_in", choices=("p_in", "peak"), doc="the mask confidence the keep share ranks by")
    dilation: float = _spec(0.05, lo=0.0, hi=0.3, doc="each lesion mask grown by this share of the side")
    method: str = _spec("ns", choices=("telea", "ns", "ring"), doc="how the removed region is filled")
    control: float = _spec(
        0.5,
        lo=0.0,
        hi=1.0,
        doc="share of no-tumour training images given a same-shaped control removal (the tumour classes' "
        "share follows, so a removed region is no class cue; 0: no controls)",
    )
    transplant: float = _spec(
        0.0,
        lo=0.0,
        hi=1.0,
        doc="share of no-tumour training images also shown with a trusted lesion pasted in (labelled its class)",
        added=True,
    )
    validation: bool = _spec(
        False,
        doc="add the validation split's counterfactuals (and controls) to the images that choose the epochs",
        added=True,
    )


@dataclass(frozen=True)
class TrainConfig:
    warmup_epochs: int = _spec(5, lo=0)
    finetune_epochs: int = _spec(10, lo=0)
    finetune_layers: int = _spec(30, lo=0)
    warmup_lr: float = _spec(1e-3, lo=0.0, hi=1.0)
    finetune_lr: float = _spec(1e-4, lo=0.0, hi=1.0)
    early_stopping_patience: int = _spec(4, lo=1)
    reduce_lr_patience: int = _spec(2, lo=1)
    reduce_lr_factor: float = _spec(0.5, lo=0.01, hi=0.99)
    class_weights: bool = _spec(True)
    view_balance: float = _spec(
        0.0,
        lo=0.0,
        hi=1.0,
        doc="weight the training images so the slice planes (estimated, `tumorlens.training.views`) even out "
        "within each class: 0 off, 1 every plane of a class the same total weight",
        added=True,
    )
    counterfactual: CounterfactualConfig = _spec(factory=CounterfactualConfig, added=True)
    prefix_cache: bool = _spec(True)
    cached_views: int = _spec(2, lo=1, hi=32)
    finetune_views: int = _spec(0, lo=0, hi=32, doc="views used in phase 2 (0: all cached views)")
    deterministic: bool = _spec(True, doc="op determinism + one inter-op thread (tumorlens.utils.determinism)")
    threads: int = _spec(0, lo=0, hi=1024, doc="intra-op threads (0: all cores; fix it to compare machines)")
    strategy: str = _spec(
        "default", choices=("default", "mirrored"), doc="tf.distribute: mirrored splits each batch over the GPUs"
    )


@dataclass(frozen=True)
class SegmentConfig:
    cam: str = _spec("gradcam", choices=CAM_METHODS, doc="map method (tumorlens.explain.cam)")
    cam_layers: str = _spec(
        "top", choices=CAM_LAYER_SETS, doc="top (stride 32) | stride16 | stride8 | fusion (16 and 8 averaged)"
    )
    flip: bool = _spec(False, doc="average the map with the mirrored image's")
    mask: str = _spec(
        "auto",
        choices=MASK_KINDS,
        doc="the mask predict writes: cam | grabcut (the map) | network | network+grabcut | auto (best on tuning half)",
    )
    compare: tuple[str, ...] = _spec(
        (),
        doc="map settings compared in the explain chapter, as method@layers[+flip]; the configured one is added",
        check=_cam_name_problem,
    )
    network: bool = _spec(True, doc="train the weak-mask network on CAM + GrabCut pseudo-masks of the training split")
    pseudo_masks: str = _spec(
        "grabcut", choices=("cam", "grabcut"), doc="the network's training masks: the binarised map or map + GrabCut"
    )
    network_flip: bool = _spec(True, doc="average the network's map with the mirrored image's")
    network_epochs: int = _spec(8, lo=1, hi=200)
    network_rounds: int = _spec(
        1, lo=1, hi=5, doc="self-training: each round after the first learns the previous network's binarised map"
    )
    network_width: int = _spec(32, lo=4, hi=256)
    network_per_class: bool = _spec(
        False,
        doc="one map per tumour class (the labelled class's pseudo-mask, the others empty); predict reads "
        "the predicted class's",
        added=True,
    )
    network_ignore: str = _spec(
        "none",
        choices=("none", "disagree"),
        doc="pseudo-mask pixels the decoder takes no loss on: none | disagree (where the binarised map and "
        "map + GrabCut disagree, UM-CAM's unreliable pixels)",
        added=True,
    )
    threshold: str = _spec("otsu", choices=("otsu", "percentile", "fixed"))
    value: float = _spec(0.5, lo=0.0, hi=100.0, doc="percentile (0-100) or fixed level (0-1)")
    hi: float = _spec(0.7, lo=0.0, hi=1.0)
    mid: float = _spec(0.35, lo=0.0, hi=1.0)
    lo: float = _spec(0.1, lo=0.0, hi=1.0)
    iterations: int = _spec(5, lo=1, hi=50)
    largest: bool = _spec(False, doc="keep only the mask's connected component at the map's peak (tuned with tune)")
    tune: bool = _spec(True, doc="choose threshold, hi and mid on the tuning part of the masks")
    tune_fraction: float = _spec(0.5, lo=0.05, hi=0.95)
    pointing_tolerance: int = _spec(15, lo=0, hi=64, doc="pixels (at the image resolution) around the CAM peak")
    masks: str | None = _spec(
        None, doc="expert-mask folder (BRISC layout); null: ../shared/data/brisc2025-seg-dev when present, else none"
    )


@dataclass(frozen=True)
class ReproduceConfig:
    """What `tumorlens run` executes for a profile (the paper's experiments)."""

    seeds: tuple[int, ...] = _spec((42, 43, 44), doc="model seeds for standard vs all modules (RQ1)")
    ablations: bool = _spec(True, doc="each module alone (seed: the first)")
    warmup_only: bool = _spec(True, doc="the all-modules variant without fine-tuning (RQ4)")
    vit: bool = _spec(True, doc="the minimal ViT from scratch (RQ5)")
    vit_epochs: int = _spec(15, lo=1)
    vit_lr: float = _spec(0.001, lo=0.0, hi=1.0)
    other_backbones: tuple[str, ...] = _spec(
        ("mobilenetv2", "efficientnetb0", "vgg16"),
        choices=BACKBONES,
        doc="trained on the smoke profile only, as labelled evidence",
    )
    backbones: tuple[str, ...] = _spec(
        (),
        choices=BACKBONES,
        doc="more ImageNet backbones, the standard variant over every seed at the backbone's native input size: "
        "candidates of the ensembles and the explain step",
    )
    poolings: tuple[str, ...] = _spec(
        (),
        choices=POOLINGS[1:],
        doc="the localisation ablation: the standard variant with each of these head poolings (seed: the first)",
    )
    intensity: bool = _spec(
        False,
        doc="the robustness ablation: the standard variant trained with intensity remapping "
        "(`tumorlens.experiments.jobs.INTENSITY_ABLATION`; seed: the first)",
    )
    explain_seeds: bool = _spec(
        False,
        doc="the explain step again on the explained classifier's recipe at each other seed (its choice "
        "stays by validation): does the weak-mask result hold over classifier seeds?",
    )
    inversion: bool = _spec(
        False,
        doc="the sequence-shortcut ablation: the standard variant trained with contrast inversion "
        "(`tumorlens.experiments.jobs.INVERSION_ABLATION`) over every seed",
    )
    view_balance: bool = _spec(
        False,
        doc="the view-shortcut ablation: the standard variant trained with plane-balanced weights "
        "(`tumorlens.experiments.jobs.VIEW_ABLATION`) over every seed",
    )
    counterfactual: tuple[str, ...] = _spec(
        (),
        doc="the lesion study: the published recipe retrained with each of these counterfactual/contrast "
        "recipes (`tumorlens.experiments.jobs.COUNTERFACTUAL_STUDY`; seed: the published model's)",
    )
    counterfactual_seeds: tuple[str, ...] = _spec(
        (), doc="of those, the recipes also trained at every other seed (the one chosen by validation)"
    )
    ensemble_k: int = _spec(3, lo=1, hi=20)
    target_accuracy: float = _spec(
        0.99,
        lo=0.0,
        hi=1.0,
        doc="accuracy and macro-F1 the best system should reach on the official split (reported, met or not)",
    )
    target_minutes: float = _spec(60.0, lo=0.0, doc="time budget of the whole reproduction (reported, met or not)")


@dataclass(frozen=True)
class ExternalConfig:
    folders: tuple[str, ...] | None = _spec(
        None,
        doc="class-per-folder sets of another release, scored by `tumorlens external` (never trained or tuned on); "
        "null: ../shared/data/brisc2025-cls-dev when present; [] none",
    )
    n_boot: int = _spec(2000, lo=100, hi=100_000, doc="bootstrap resamples of the intervals")


@dataclass(frozen=True)
class PathsConfig:
    runs: str = _spec("runs", doc="output root; relative paths are relative to the repository")


#: The environment variable naming a file where every settings section a process reads is recorded
#: (`trace_sections`): the runner sets it for each job's kernel and checks the sections against the
#: step's declaration (`tumorlens.experiments.steps`).
TRACE_ENV = "TUMORLENS_SETTINGS_TRACE"
#: The sections traced (``paths`` says where things go, not what a result is, so it is not).
TRACED_SECTIONS = frozenset({"data", "augment", "audit", "model", "train", "segment", "reproduce", "external"})
_traced: set[tuple[str, str]] = set()
_untraced_depth = 0


class _untraced:
    """Inside: reading every section for bookkeeping (`Config.to_dict`, a fingerprint) is not a read."""

    def __enter__(self):
        global _untraced_depth
        _untraced_depth += 1

    def __exit__(self, *exc):
        global _untraced_depth
        _untraced_depth -= 1


def _note_section(name: str) -> None:
    target = os.environ.get(TRACE_ENV)
    if not target or (target, name) in _traced:
        return
    _traced.add((target, name))
    try:
        with open(target, "a") as fh:
            fh.write(name + "\n")
    except OSError:  # a trace that cannot be written must not break the run; the check then finds nothing
        pass


def trace_sections(file: str | os.PathLike) -> set[str]:
    """The sections recorded in a trace file (see `TRACE_ENV`); empty when there is none."""
    try:
        return {line.strip() for line in Path(file).read_text().splitlines() if line.strip()}
    except OSError:
        return set()


@dataclass(frozen=True)
class Config:
    """The resolved settings of one run (frozen: use `override` to derive another)."""

    def __getattribute__(self, name: str):
        if name in TRACED_SECTIONS and not _untraced_depth and object.__getattribute__(self, "__dict__").get("_job"):
            _note_section(name)
        return object.__getattribute__(self, name)

    profile: str = _spec("base")
    seed: int = _spec(42, lo=0, hi=2**31 - 1)
    data: DataConfig = _spec(factory=DataConfig)
    augment: AugmentConfig = _spec(factory=AugmentConfig)
    audit: AuditConfig = _spec(factory=AuditConfig)
    model: ModelConfig = _spec(factory=ModelConfig)
    train: TrainConfig = _spec(factory=TrainConfig)
    segment: SegmentConfig = _spec(factory=SegmentConfig)
    reproduce: ReproduceConfig = _spec(factory=ReproduceConfig)
    external: ExternalConfig = _spec(factory=ExternalConfig)
    paths: PathsConfig = _spec(factory=PathsConfig)

    # -- derived -------------------------------------------------------------------------------
    @property
    def data_root(self) -> Path:
        """The dataset folder (for ``source: phantoms``, where the phantoms are generated)."""
        if self.data.source == "phantoms":
            return paths.cache_root() / "phantoms" / _phantom_key(self)
        if self.data.root:
            return paths.resolve(self.data.root)
        return paths.default_data_root()

    @property
    def runs_root(self) -> Path:
        return paths.resolve(self.paths.runs) / self.profile

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        """Rebuild (and validate) a config from `to_dict` output, e.g. a run's ``config.json``."""
        return _build(cls, d, "")

    def to_dict(self) -> dict[str, Any]:
        with _untraced():
            return _plain(self)

    def override(self, updates: Mapping[str, Any]) -> "Config":
        """Return a copy with dotted keys replaced, validated like the file: ``{"train.seed": 1}``."""
        nested: dict[str, Any] = {}
        for dotted, value in updates.items():
            node = nested
            parts = dotted.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = value
        out = _build(Config, _deep_merge(self.to_dict(), nested), "")
        if object.__getattribute__(self, "__dict__").get("_job"):
            object.__setattr__(out, "_job", True)
        return out


def _default_of(f: dataclasses.Field) -> Any:
    """A field's default, built when it has a factory (a nested settings section)."""
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _plain(v: Any, *, drop_added_defaults: bool = False) -> Any:
    """Settings as plain data (lists for tuples); ``drop_added_defaults``: without the settings marked
    ``added`` that are at their default."""
    if dataclasses.is_dataclass(v):
        return {
            f.name: _plain(getattr(v, f.name), drop_added_defaults=drop_added_defaults)
            for f in dataclasses.fields(v)
            if not (drop_added_defaults and f.metadata.get("added") and getattr(v, f.name) == _default_of(f))
        }
    if isinstance(v, tuple):
        return [_plain(x, drop_added_defaults=drop_added_defaults) for x in v]
    return v


def settings_fingerprint(cfg: Config, sections: Sequence[str]) -> dict[str, Any]:
    """The settings of ``sections`` as plain data, for a hash of what a job read: like `Config.to_dict`,
    less the settings marked ``added`` that are at their default (they do what runs recorded before
    them did) and less ``data.root`` (where the dataset lies: a published record must compare on another
    machine)."""
    with _untraced():
        out = {k: _plain(getattr(cfg, k), drop_added_defaults=True) for k in sections if hasattr(cfg, k)}
    if "data" in out:  # where the dataset lies is no setting of a result (a run records the dataset's identity)
        out["data"].pop("root", None)
    return out


def _phantom_key(cfg: Config) -> str:
    p = cfg.data.phantoms
    return f"s{cfg.data.image_size}-n{p.train_per_class}-{p.test_per_class}-d{p.duplicates}-seed{cfg.data.seed}"


# ---------------------------------------------------------------------------------------------
def _deep_merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _check_value(key: str, tp: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and type(None) in args):  # X | None
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_value(key, inner, value, meta)
    if origin is tuple:  # tuple[str, ...]: a list of choices
        if value is None:
            value = []
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        items = tuple(_check_value(f"{key}[{i}]", args[0], v, meta) for i, v in enumerate(value))
        if len(set(items)) != len(items):
            raise ConfigError(f"{key}: repeated entries in {list(value)!r}")
        return items
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):  # NaN compares false with every bound: refuse it before the bounds
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    elif tp is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    choices, lo, hi = meta.get("choices"), meta.get("lo"), meta.get("hi")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}; got {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(f"{key}: expected a value >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: expected a value <= {hi}, got {value!r}")
    expected = meta["check"](value) if meta.get("check") else None
    if expected:
        raise ConfigError(f"{key}: expected {expected}; got {value!r}")
    return value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of settings, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise ConfigError(f"unknown setting {key!r} (value {raw[unknown[0]]!r}); known keys here: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        tp, key = hints[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, raw[name], key + ".")
        else:
            kwargs[name] = _check_value(key, tp, raw[name], f.metadata)
    return cls(**kwargs)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping (plain YAML keeps the last silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges are YAML's own way to reuse a mapping
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the base constructor reports it
            break
        if first is not None:
            raise ConfigError(
                f"{loader.name}: line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                f"(first given on line {first}); a key may appear once per section"
            )
        seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        loader = _UniqueKeyLoader(path.read_text())
        loader.name = str(path)
        try:
            doc = loader.get_single_data()
        finally:
            loader.dispose()
    except FileNotFoundError:
        raise ConfigError(f"settings file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("base"), dict):
        raise ConfigError(f"{path}: expected a mapping with a 'base' section and 'profiles'")
    extra = sorted(set(doc) - {"base", "profiles"})
    if extra:
        raise ConfigError(f"{path}: unknown top-level key {extra[0]!r}; expected 'base' and 'profiles'")
    return doc


def profiles(path: str | os.PathLike | None = None) -> list[str]:
    """The profile names the settings file defines."""
    doc = _read_file(Path(path) if path else paths.config_file())
    return sorted(doc.get("profiles") or {})


def load_config(
    profile: str | None = None,
    path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Load ``base`` merged with ``profiles[profile]``, apply environment then ``overrides``.

    Args:
        profile: a profile name from the file (``smoke``, ``cpu``, ``paper``), or None for base.
        path: the settings file; defaults to the repository's ``_config.yml`` (`paths.config_file`).
        overrides: dotted keys applied last, e.g. ``{"model.backbone": "vgg16"}``.
        env: the environment to read ``TUMORLENS_DATA`` / ``TUMORLENS_RUNS`` from (default os.environ).
    """
    file = Path(path) if path else paths.config_file()
    doc = _read_file(file)
    raw = dict(doc["base"])
    if profile is not None:
        known = doc.get("profiles") or {}
        if profile not in known:
            raise ConfigError(f"unknown profile {profile!r} in {file}; known: {', '.join(sorted(known))}")
        raw = _deep_merge(raw, known[profile] or {})
    if "profile" in raw:
        raise ConfigError(f"{file}: 'profile' is set by the profile name, not a key (got {raw['profile']!r})")
    raw["profile"] = profile or "base"
    env = os.environ if env is None else env
    if env.get("TUMORLENS_DATA"):
        raw = _deep_merge(raw, {"data": {"root": env["TUMORLENS_DATA"]}})
    if env.get("TUMORLENS_RUNS"):
        raw = _deep_merge(raw, {"paths": {"runs": env["TUMORLENS_RUNS"]}})
    cfg = _build(Config, raw, "")
    object.__setattr__(cfg, "_job", True)  # the settings a job reads (traced); a run's recorded config is not
    return cfg.override(overrides) if overrides else cfg
