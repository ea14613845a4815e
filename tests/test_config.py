import dataclasses

import pytest

from tumorlens.config import BACKBONES, CLASSES, Config, ConfigError, load_config, profiles

BASE = """
base:
  seed: 1
  data: {image_size: 224, split: official}
  model: {backbone: vgg16, modules: [mab]}
profiles:
  small:
    data: {image_size: 64}
"""


@pytest.fixture
def cfg_file(tmp_path):
    p = tmp_path / "c.yml"
    p.write_text(BASE)
    return p


def test_repository_profiles_load_and_differ():
    assert {"smoke", "cpu", "paper"} <= set(profiles())
    smoke, cpu, paper = (load_config(p, env={}) for p in ("smoke", "cpu", "paper"))
    assert smoke.data.source == "phantoms" and smoke.data.image_size == 64
    assert smoke.model.weights == "none" and smoke.train.warmup_epochs == 1 and smoke.train.finetune_epochs == 1
    assert cpu.data.source == "kaggle" and cpu.data.image_size == 224 and cpu.model.backbone == "efficientnet_lite0"
    assert paper.model.weights == "imagenet" and paper.data.split == "paper"
    assert smoke.profile == "smoke"


def test_profile_overrides_base(cfg_file):
    cfg = load_config("small", path=cfg_file, env={})
    assert cfg.data.image_size == 64 and cfg.data.split == "official" and cfg.seed == 1
    assert cfg.model.modules == ("mab",)
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_config("nope", path=cfg_file, env={})


@pytest.mark.parametrize(
    "text, match",
    [
        ("base:\n  data: {imagesize: 64}\n", r"'data\.imagesize'.*64"),
        ("base:\n  data: {image_size: -3}\n", r"data\.image_size.*-3"),
        ("base:\n  data: {image_size: big}\n", r"data\.image_size.*'big'"),
        ("base:\n  model: {backbone: resnet}\n", r"model\.backbone.*'resnet'"),
        ("base:\n  model: {modules: [mab, foo]}\n", r"model\.modules\[1\].*'foo'"),
        ("base:\n  train: {class_weights: 1}\n", r"train\.class_weights.*1"),
        ("base:\n  colour: red\n", r"'colour'.*'red'"),
        ("base:\n  model: {weights: imagnet}\n", r"model\.weights.*'imagnet'"),
    ],
)
def test_bad_keys_and_values_name_both(tmp_path, text, match):
    p = tmp_path / "bad.yml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path=p, env={})


def test_environment_overrides(cfg_file, tmp_path):
    cfg = load_config(path=cfg_file, env={"TUMORLENS_DATA": str(tmp_path / "d"), "TUMORLENS_RUNS": str(tmp_path / "r")})
    assert cfg.data_root == tmp_path / "d"
    assert cfg.runs_root == tmp_path / "r" / "base"


def test_config_is_frozen_and_override_validates(cfg_file):
    cfg = load_config(path=cfg_file, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]
    new = cfg.override({"seed": 3, "model.backbone": "mobilenetv2"})
    assert (new.seed, new.model.backbone, cfg.seed) == (3, "mobilenetv2", 1)
    with pytest.raises(ConfigError, match="train.warmup_epochs.*'x'"):
        cfg.override({"train.warmup_epochs": "x"})
    assert isinstance(new, Config) and new.to_dict()["model"]["modules"] == ["mab"]


def test_config_names_agree_with_the_code_that_uses_them():
    """The settings' backbone list is the model registry's, and labels follow the sorted folder names
    (the order Keras' and the dataset's own folder loaders index classes in)."""
    from tumorlens.data.inventory import CLASS_ALIASES, _class_name
    from tumorlens.models.backbones import REGISTRY

    assert set(BACKBONES) == set(REGISTRY)
    assert list(CLASSES) == sorted(CLASSES)
    assert all(_class_name(alias) in CLASSES for alias in CLASS_ALIASES)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused(value):
    """NaN compares false with every bound, so it once passed validation and trained a NaN model."""
    with pytest.raises(ConfigError, match="train.warmup_lr: expected a finite number"):
        load_config("smoke", overrides={"train.warmup_lr": value})
