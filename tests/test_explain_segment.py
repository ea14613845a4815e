import cv2
import keras
import numpy as np
import pytest

from tumorlens.data.io import letterbox, unletterbox_mask
from tumorlens.data.phantoms import render_phantom
from tumorlens.explain.cam import cam_maps, grad_cam, predict_and_explain, upsample_normalise
from tumorlens.explain.weak_masks import SegmentParams, binarise, grabcut_mask, head_mask, segment
from tumorlens.metrics.segmentation import dice, iou, pointing_game


def _two_region_model():
    """Class 0 = mean red, class 1 = mean green, through a 1x1 conv 'target' layer: the evidence for each
    class lies exactly where that colour is."""
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(2, 1, use_bias=False, activation="relu", name="target")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    model = keras.Model(inp, out)
    model.get_layer("target").set_weights([np.array([[[[1, 0], [0, 1], [0, 0]]]], "float32")])
    model.get_layer("predictions").set_weights([np.eye(2, dtype="float32") * 0.1, np.zeros(2, "float32")])
    return model


def _two_region_image():
    img = np.zeros((1, 32, 32, 3), "float32")
    img[0, 2:14, 2:14, 0] = 255.0  # red: top-left, larger -> class 0 wins
    img[0, 22:30, 22:30, 1] = 255.0  # green: bottom-right
    return img


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam"])
def test_cam_finds_the_known_discriminative_region(method):
    model, img = _two_region_model(), _two_region_image()
    c0 = grad_cam(model, img, "target", 0, method=method)[0]
    c1 = grad_cam(model, img, "target", 1, method=method)[0]
    assert c0[2:14, 2:14].mean() > 0.8 and c0[22:30, 22:30].mean() < 0.05
    assert c1[22:30, 22:30].mean() > 0.8 and c1[2:14, 2:14].mean() < 0.05
    assert np.array_equal(grad_cam(model, img, "target", None, method=method), c0[None])  # None = argmax = 0


def _location_model():
    """One 'target' channel (the red intensity) everywhere, but only the top-left quarter counts for
    class 0: the answer is the top-left red square, not the bottom-right one."""
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(1, 1, use_bias=False, name="target")(inp)
    weight = np.zeros((1, 32, 32, 1), "float32")
    weight[:, :16, :16] = 1.0
    x = keras.layers.Lambda(lambda t: t * weight, name="only_top_left")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax", name="predictions")(x)
    model = keras.Model(inp, out)
    model.get_layer("target").set_weights([np.array([[[[1], [0], [0]]]], "float32")])
    model.get_layer("predictions").set_weights([np.array([[0.1, -0.1]], "float32"), np.zeros(2, "float32")])
    img = np.zeros((1, 32, 32, 3), "float32")
    img[0, 4:12, 4:12, 0] = 255.0  # counts
    img[0, 20:28, 20:28, 0] = 255.0  # the same colour where it does not count
    return model, img


def test_layercam_keeps_the_location_that_grad_cam_averages_away():
    model, img = _location_model()
    lc = grad_cam(model, img, "target", 0, method="layercam")[0]
    gc = grad_cam(model, img, "target", 0, method="gradcam")[0]
    assert lc[4:12, 4:12].mean() > 0.8 and lc[20:28, 20:28].max() < 0.05
    # Grad-CAM weights the whole channel by its mean gradient: both squares light up alike
    assert gc[4:12, 4:12].mean() > 0.8 and gc[20:28, 20:28].mean() > 0.8


def test_fusion_averages_layers_on_the_finest_grid_and_flip_averages_the_mirror():
    inp = keras.Input((32, 32, 3))
    fine = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="fine")(inp)
    coarse = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="coarse")(fine)
    x = keras.layers.GlobalAveragePooling2D()(coarse)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="predictions")(x))
    x = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3)).astype("float32")
    fused, _ = cam_maps(model, x, ["coarse", "fine"], 1, method="layercam")
    assert fused.shape == (2, 32, 32) and 0 <= fused.min() and fused.max() <= 1 + 1e-6
    single, _ = cam_maps(model, x, "coarse", 1, method="layercam")
    assert single.shape == (2, 16, 16)
    flipped, _ = cam_maps(model, x, "fine", 1, method="layercam", flip=True)
    a, _ = cam_maps(model, x, "fine", 1, method="layercam")
    b, _ = cam_maps(model, x[:, :, ::-1], "fine", 1, method="layercam")

    def scale(m):
        return m / m.max(axis=(1, 2), keepdims=True)

    assert np.allclose(flipped, (scale(a) + scale(b)[:, :, ::-1]) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="at least one layer"):
        cam_maps(model, x, [], 1)


def test_a_blank_image_gives_blank_maps():
    model, _ = _location_model()
    for method in ("gradcam", "gradcam++", "layercam"):
        maps = grad_cam(model, np.zeros((1, 32, 32, 3), "float32"), "target", 0, method=method)
        assert maps.shape == (1, 32, 32) and not maps.any()


def test_cam_settings_parse_name_and_resolve_layers_of_every_backbone():
    from tumorlens.explain.cam import CamSetting, resolve_layers
    from tumorlens.models.classifier import build_classifier

    for name in ("gradcam@top", "layercam@fusion+flip", "gradcam++@stride8"):
        assert CamSetting.parse(name).name == name
    assert CamSetting.parse("gradcam") == CamSetting("gradcam", "top", False)
    with pytest.raises(ValueError, match="'nope'"):
        CamSetting("layercam", "nope")
    for backbone in ("efficientnet_lite0", "mobilenetv2"):
        model = build_classifier(backbone, (), image_size=64, weights="none")
        sides = {}
        for which in ("top", "stride16", "stride8", "fusion"):
            for layer in resolve_layers(backbone, which):
                sides[layer] = model.get_layer(layer).output.shape[1]
        top, s16, s8 = (resolve_layers(backbone, w)[0] for w in ("top", "stride16", "stride8"))
        assert (sides[top], sides[s16], sides[s8]) == (2, 4, 8), (backbone, sides)
        assert resolve_layers(backbone, "fusion") == (s16, s8)
    assert resolve_layers("vit", "fusion") == ("encoder_grid",)
    with pytest.raises(ValueError, match="'stride4'"):
        resolve_layers("efficientnet_lite0", "stride4")


def test_shapes_range_and_none_means_argmax_on_a_classifier():
    from tumorlens.models.classifier import build_classifier

    model = build_classifier("mobilenetv2", ("sbr",), image_size=32, weights="none")
    x = np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3)).astype("uint8")
    probs, maps = predict_and_explain(model, x, "out_relu")
    assert maps.shape == (3, 32, 32) and maps.dtype == np.float32 and maps.min() >= 0 and maps.max() <= 1
    assert np.allclose(grad_cam(model, x, "out_relu", list(probs.argmax(1))), maps)
    raw, p2 = cam_maps(model, x, "out_relu")
    assert raw.shape == (3, 1, 1) and np.allclose(p2, probs, atol=1e-6)
    with pytest.raises(ValueError, match="method='cam'"):
        grad_cam(model, x, "out_relu", method="cam")
    with pytest.raises(ValueError, match="'nope'"):
        grad_cam(model, x, "nope")


def test_shared_passes_give_every_setting_the_maps_of_its_own_pass():
    """`cam_maps_many` (one backward pass for every layer, one mirrored pass for the flipped settings) must
    give each setting exactly what `cam_maps` gives it alone, for the predicted and for a given class."""
    from tumorlens.explain.cam import CamSetting, cam_maps_many
    from tumorlens.models.classifier import build_classifier

    model = build_classifier("efficientnet_lite0", (), image_size=64, weights="none")
    x = np.random.default_rng(1).integers(0, 255, (5, 64, 64, 3)).astype("uint8")
    names = ["gradcam@top", "gradcam++@top", "layercam@stride16", "layercam@fusion", "layercam@fusion+flip"]
    settings = [CamSetting.parse(n) for n in names]
    for cls in (None, [0, 1, 2, 3, 1]):
        many, probs = cam_maps_many(model, x, settings, "efficientnet_lite0", cls, batch_size=2)
        assert list(many) == names
        for cs in settings:
            alone, p1 = cam_maps(
                model, x, cs.layer_names("efficientnet_lite0"), cls, method=cs.method, flip=cs.flip, batch_size=3
            )
            assert many[cs.name].shape == alone.shape and many[cs.name].dtype == np.float32
            np.testing.assert_allclose(many[cs.name], alone, rtol=1e-4, atol=1e-6 * max(1.0, alone.max()))
            np.testing.assert_allclose(probs, p1, atol=1e-6)
    with pytest.raises(ValueError, match="at least one"):
        cam_maps_many(model, x, [], "efficientnet_lite0")


def test_upsample_normalise_scales_each_map_and_zeroes_flat_ones():
    maps = np.stack([np.arange(4, dtype="float32").reshape(2, 2), np.full((2, 2), 3.0, "float32")])
    out = upsample_normalise(maps, (8, 8))
    assert out.shape == (2, 8, 8) and out[0].min() == 0 and out[0].max() == 1 and not out[1].any()


# ---------------------------------------------------------------------------------------------
def _phantom(cls="meningioma", seed=1, size=128):
    img, mask = render_phantom(cls, size, seed)
    return np.repeat(img[..., None], 3, axis=2), mask > 0


def test_binarise_methods():
    cam = np.zeros((10, 10), "float32")
    cam[2:5, 2:5] = 1.0
    cam[6:, 6:] = 0.4
    assert binarise(cam, "otsu").sum() in (9, 25)
    assert binarise(cam, "fixed", 0.5).sum() == 9
    assert binarise(cam, "percentile", 90).sum() == 9
    assert not binarise(np.full((4, 4), 0.3), "otsu").any()
    with pytest.raises(ValueError, match="method='mean'"):
        binarise(cam, "mean")


def test_head_mask_covers_the_head_not_the_background():
    img, _ = _phantom("notumor")
    head = head_mask(img)
    gray = img[..., 0]
    assert head[64, 64] and not head[0, 0] and not head[-1, -1]
    assert (gray[head] > 20).mean() > 0.9 and (gray[~head] < 40).mean() > 0.9
    assert not head_mask(np.zeros((32, 32, 3), np.uint8)).any()


def test_grabcut_refines_a_blurred_cam_to_the_lesion():
    """A CAM that is the true mask blurred (a coarse, spread-out map): GrabCut recovers the boundary."""
    scores = []
    for cls in ("glioma", "meningioma", "pituitary"):
        for seed in range(3):
            img, truth = _phantom(cls, seed=seed)
            cam = cv2.GaussianBlur(truth.astype("float32"), (0, 0), 6)
            cam = (cam - cam.min()) / (cam.max() - cam.min())
            masks = segment(img, cam, cls, SegmentParams(threshold="fixed", value=0.2, hi=0.8, mid=0.3, lo=0.1))
            scores.append((dice(masks["cam"], truth), dice(masks["grabcut"], truth)))
    cam_only, grabcut = np.mean(scores, axis=0)
    assert grabcut > 0.75 and grabcut > cam_only + 0.2


def test_mask_seeded_grabcut_moves_a_misplaced_binarised_map_to_the_lesion_and_no_further():
    """seeds="mask": GrabCut refines the binarised map within a ring of ``ring`` pixels around it. A map
    peaked off the lesion's centre (binarised: too small and shifted) is pulled onto the lesion."""
    scores = []
    for cls in ("glioma", "meningioma", "pituitary"):
        for seed in range(3):
            img, truth = _phantom(cls, seed=seed)
            shifted = np.roll(cv2.erode(truth.astype(np.uint8), np.ones((5, 5), np.uint8)), 3, axis=1)
            cam = cv2.GaussianBlur(shifted.astype("float32"), (0, 0), 2)
            cam = (cam - cam.min()) / (cam.max() - cam.min())
            p = SegmentParams(threshold="fixed", value=0.5, seeds="mask", ring=6, core=0)
            head = head_mask(img)
            refined = grabcut_mask(img, cam, head, p)
            binarised = binarise(cam, "fixed", 0.5) & head
            ring = cv2.dilate(binarised.astype(np.uint8), np.ones((13, 13), np.uint8)).astype(bool)
            assert not (refined & ~ring).any()  # never beyond the ring
            scores.append((dice(binarised, truth), dice(refined, truth)))
    binarised, refined = np.mean(scores, axis=0)
    assert refined > binarised + 0.05 and refined > 0.7
    with pytest.raises(ValueError, match="seeds=.edges."):
        SegmentParams(seeds="edges")
    with pytest.raises(ValueError, match="ring=0"):
        SegmentParams(ring=0)


def test_grabcut_is_deterministic_whatever_the_thread_rng_did_before():
    rng = np.random.default_rng(0)
    img = (rng.random((96, 96, 3)) * 255).astype(np.uint8)
    img[30:70, 30:70] = cv2.GaussianBlur(img[30:70, 30:70], (0, 0), 3)
    yy, xx = np.mgrid[0:96, 0:96]
    cam = np.exp(-((yy - 50) ** 2 + (xx - 50) ** 2) / 300).astype(np.float32)
    head = np.ones((96, 96), bool)
    masks = []
    for _ in range(3):
        cv2.randu(np.zeros(7), 0, 1)  # advance OpenCV's thread RNG, as other images would
        masks.append(grabcut_mask(img, cam, head, SegmentParams(hi=0.7, mid=0.35, lo=0.1)))
    assert all(np.array_equal(masks[0], m) for m in masks[1:])


def test_degenerate_cases_are_empty_by_definition():
    img, truth = _phantom("glioma")
    flat = np.full(truth.shape, 0.5, "float32")
    assert not segment(img, flat, "glioma")["grabcut"].any() and not segment(img, flat, "glioma")["cam"].any()
    outside = np.zeros(truth.shape, "float32")
    outside[:8, :8] = 1.0  # all evidence in the image corner, outside the head
    assert not grabcut_mask(img, outside).any()
    cam = cv2.GaussianBlur(truth.astype("float32"), (0, 0), 4)
    both = segment(img, cam / cam.max(), "notumor")  # a no-tumour prediction: no mask by design
    assert not both["cam"].any() and not both["grabcut"].any()


def test_scores():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True
    b[1:3] = True
    assert dice(a, b) == pytest.approx(0.5) and iou(a, b) == pytest.approx(1 / 3)
    assert dice(a, a) == 1 and dice(~a & a, ~a & a) == 1.0 and dice(a, ~a) == 0.0
    cam = np.zeros((10, 10))
    cam[1, 1] = 1
    m = np.zeros((10, 10), bool)
    m[4:6, 4:6] = True
    assert not pointing_game(cam, m) and pointing_game(cam, m, tolerance=5) and not pointing_game(np.ones((10, 10)), m)
    cam[5, 5] = 2
    assert pointing_game(cam, m)


def test_unletterbox_inverts_letterbox():
    mask = np.zeros((60, 90), np.uint8)
    mask[10:40, 20:70] = 1
    boxed = letterbox(mask[..., None].repeat(3, 2) * 255, 96)[..., 0] > 127
    back = unletterbox_mask(boxed, (60, 90))
    assert back.shape == (60, 90) and dice(back, mask.astype(bool)) > 0.95


def test_keep_peak_component_keeps_the_blob_at_the_maps_peak():
    from tumorlens.explain.weak_masks import keep_peak_component, map_mask

    mask = np.zeros((32, 32), bool)
    mask[2:8, 2:8] = True  # large blob, low map values
    mask[20:24, 20:24] = True  # small blob holding the peak
    cam = np.zeros((32, 32), np.float32)
    cam[2:8, 2:8] = 0.6
    cam[20:24, 20:24] = 0.9
    cam[0, 31] = 1.0  # the global peak lies outside the mask: only values inside count
    kept = keep_peak_component(mask, cam)
    assert kept.sum() == 16 and kept[21, 21] and not kept[4, 4]
    assert not keep_peak_component(np.zeros((4, 4), bool), np.ones((4, 4))).any()
    img = np.full((32, 32, 3), 120, np.uint8)
    cam[0, 31] = 0.4  # below the threshold
    both = map_mask(img, cam, np.ones((32, 32), bool), SegmentParams(threshold="fixed", value=0.5))
    one = map_mask(img, cam, np.ones((32, 32), bool), SegmentParams(threshold="fixed", value=0.5, largest=True))
    assert both.sum() == 52 and one.sum() == 16
