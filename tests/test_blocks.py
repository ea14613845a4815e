import keras
import numpy as np
import pytest

from tumorlens.models.blocks import (
    CBAM,
    BoundaryRefinement,
    EdgeMap,
    LocalPooling,
    MixedAttention,
    ResidualPathHead,
    SqueezeExcite,
)
from tumorlens.models.layers import Preprocess
from tumorlens.models.vit import PatchEmbedding, PositionEmbedding, TransformerBlock

rng = np.random.default_rng(0)
X = rng.normal(size=(2, 5, 6, 16)).astype("float32")


@pytest.mark.parametrize(
    "layer", [MixedAttention(reduction=4), SqueezeExcite(reduction=4), CBAM(reduction=4, kernel_size=3)]
)
def test_attention_blocks_keep_shape(layer):
    assert layer(X).shape == X.shape


def test_zero_initialised_modules_start_as_identity():
    assert np.allclose(MixedAttention()(X), X)
    edges = rng.random((2, 5, 6, 2)).astype("float32")
    assert np.allclose(BoundaryRefinement()([X, edges]), X)
    assert np.allclose(ResidualPathHead(reduction=4)(X), X.mean(axis=(1, 2)), atol=1e-6)


def test_mab_attention_is_a_distribution_over_positions():
    mab = MixedAttention(reduction=4)
    mab(X)
    a = np.asarray(mab.attention(X))
    assert a.shape == (2, 30, 30) and np.allclose(a.sum(-1), 1, atol=1e-5) and (a >= 0).all()
    mab.gamma.assign(1.0)
    assert not np.allclose(mab(X), X)


def test_edge_map_finds_a_boundary():
    img = np.zeros((1, 32, 32, 3), "float32")
    img[:, 4:28, 12:20] = 255.0  # a bright bar: vertical edges at columns 12 and 20
    e = np.asarray(EdgeMap(grid=(4, 4))(img))
    assert e.shape == (1, 4, 4, 2) and 0 <= e.min() and e.max() <= 1
    inner, outer = e[0, 1:3, 1:3, 0].mean(), np.concatenate([e[0, :, 0, 0], e[0, :, 3, 0]]).mean()
    assert inner > 0.05 and outer < 1e-3  # energy at the bar's edges only


@pytest.mark.parametrize(
    "make, bad",
    [
        (lambda: MixedAttention(reduction=0), "reduction=0"),
        (lambda: ResidualPathHead(reduction="4"), "reduction='4'"),
        (lambda: CBAM(kernel_size=-1), "kernel_size=-1"),
        (lambda: EdgeMap(grid=(1, 2, 3)), "grid=(1, 2, 3)"),
        (lambda: Preprocess("imagenet"), "mode='imagenet'"),
        (lambda: PatchEmbedding(patch_size=0), "patch_size=0"),
        (lambda: TransformerBlock(dropout=1.5), "dropout=1.5"),
        (lambda: LocalPooling("max"), "mode='max'"),
        (lambda: LocalPooling("lse", r=0), "r=0"),
        (lambda: LocalPooling("topk", k=1.5), "k=1.5"),
    ],
)
def test_bad_arguments_name_the_received_value(make, bad):
    with pytest.raises(ValueError, match=bad.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_rank_check_names_the_shape():
    with pytest.raises(ValueError, match=r"\(2, 16\)"):
        MixedAttention()(np.zeros((2, 16), "float32"))


def test_each_layer_round_trips_through_keras_file(tmp_path):
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=8)(inp)
    e = EdgeMap(grid=(4, 4))(inp)
    x = BoundaryRefinement()([x, e])
    x = SqueezeExcite(reduction=2)(x)
    x = CBAM(reduction=2, kernel_size=3)(x)
    x = MixedAttention(reduction=2)(x)
    y = ResidualPathHead(reduction=2)(x)
    lse, top = LocalPooling("lse", r=3.0)(x), LocalPooling("topk", k=0.25)(x)
    t = PatchEmbedding(8, 16)(Preprocess("unit")(inp))
    t = TransformerBlock(heads=2, mlp_dim=8)(PositionEmbedding()(t))
    out = keras.layers.Concatenate()([y, lse, top, keras.layers.GlobalAveragePooling1D()(t)])
    model = keras.Model(inp, out)
    for layer in model.layers:  # leave the identity start so the round trip is informative
        if hasattr(layer, "gamma"):
            layer.gamma.assign(0.7)
    data = rng.random((2, 32, 32, 3)).astype("float32") * 255
    before = model.predict(data, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert np.allclose(loaded.predict(data, verbose=0), before, atol=1e-5)
    for layer in (
        MixedAttention(reduction=3),
        CBAM(2, 5),
        EdgeMap((3, 4)),
        TransformerBlock(2, 16, 0.2),
        LocalPooling("topk", k=0.3),
    ):
        clone = layer.__class__.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_local_pooling_spans_mean_to_max_and_follows_the_strongest_locations():
    """LocalPooling: (B, H, W, C) -> (B, C); lse tends to the mean as r -> 0 and to the max as r grows,
    topk is the mean at k = 1 and the max for one location, and a small bright region moves it far
    more than it moves the global average."""
    mean, peak = X.mean(axis=(1, 2)), X.max(axis=(1, 2))
    assert np.asarray(LocalPooling("lse", r=0.01)(X)).shape == (2, 16)
    assert np.allclose(LocalPooling("lse", r=0.01)(X), mean, atol=0.02)  # mean + r var / 2 + ...
    assert np.allclose(LocalPooling("lse", r=200.0)(X), peak, atol=0.05)
    assert np.allclose(LocalPooling("topk", k=1.0)(X), mean, atol=1e-5)
    assert np.allclose(LocalPooling("topk", k=1e-6)(X), peak, atol=1e-6)
    lse = np.asarray(LocalPooling("lse", r=5.0)(X))
    assert (lse >= mean - 1e-5).all() and (lse <= peak + 1e-5).all()
    blank = np.zeros((1, 8, 8, 2), "float32")
    lesion = blank.copy()
    lesion[0, 2:4, 5:7, 0] = 1.0  # 4 of 64 locations light up in channel 0
    for pool in (LocalPooling("lse", r=5.0), LocalPooling("topk", k=0.1)):
        gain = np.asarray(pool(lesion) - pool(blank))[0]
        assert gain[0] > 5 * lesion[0, ..., 0].mean() and gain[1] == pytest.approx(0.0, abs=1e-6)
