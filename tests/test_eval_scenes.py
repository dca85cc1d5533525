"""The synthetic scene generator and the classifier that reads scenes back (pure numpy, no ComfyUI)."""

import numpy as np
import pytest

from concept_attention.eval import classify, scenes


def test_same_seed_same_scene():
    a, b = scenes.make_scene(123), scenes.make_scene(123)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks) and a.caption == b.caption
    assert not np.array_equal(a.image, scenes.make_scene(124).image)


def test_scene_contents_are_consistent():
    for scene in scenes.make_scenes(200, start=0):
        k = len(scene.objects)
        assert 1 <= k <= 3
        assert scene.image.shape == (32, 32, 3) and scene.image.dtype == np.float32
        assert 0 <= scene.image.min() and scene.image.max() <= 1
        assert scene.masks.shape == (k, 32, 32)
        assert (scene.masks.sum(axis=0) <= 1).all(), "objects never overlap"
        assert all(m.sum() >= 40 for m in scene.masks)
        assert len({o.color for o in scene.objects}) == k, "colours are distinct within a scene"
        assert all((o.color, scene.background) not in scenes.CLASHES for o in scene.objects)
        for obj, mask in zip(scene.objects, scene.masks):
            assert obj.name in scene.caption
            mean = scene.image[mask].mean(axis=0)
            assert np.linalg.norm(mean - np.array(scenes.COLORS[obj.color])) < 0.05
        assert scene.caption.endswith(f"on {scene.background}")
        assert scene.concepts == tuple(o.name for o in scene.objects) + (scene.background,)
        assert set(scenes.caption_words(scene.caption)) <= set(scenes.vocabulary())


def test_caption_relation_matches_the_geometry():
    for scene in scenes.make_scenes(100, start=0):
        if len(scene.objects) != 2:
            continue
        a, b = scene.objects
        (ay, ax), (by, bx) = a.center, b.center
        rel = scenes.relation(a, b)
        assert rel in scene.caption
        assert {"above": ay < by, "below": ay > by, "left of": ax < bx, "right of": ax > bx}[rel]


def test_shape_masks_by_hand():
    square = scenes.shape_mask("square", (2, 3, 4), 10)
    assert square.sum() == 16 and square[2:6, 3:7].all()
    circle = scenes.shape_mask("circle", (0, 0, 10), 10)
    assert 70 <= circle.sum() <= 82 and circle[5, 5] and not circle[0, 0]
    triangle = scenes.shape_mask("triangle", (0, 0, 10), 10)
    assert 40 <= triangle.sum() <= 60 and triangle[9].sum() > triangle[1].sum()
    with pytest.raises(ValueError):
        scenes.shape_mask("hexagon", (0, 0, 4), 8)


def test_training_and_held_out_seeds_do_not_meet():
    from concept_attention.eval.train import DEFAULTS

    assert DEFAULTS["pool"] <= scenes.HELD_OUT_SEED


def test_classifier_reads_rendered_scenes_back():
    """Validated on the generator's ground truth: colours, shapes and backgrounds of 300 scenes."""
    totals = {}
    for scene in scenes.make_scenes(300, start=scenes.HELD_OUT_SEED + 900_000):
        for key, value in classify.caption_agreement(scene.image, scene).items():
            totals[key] = totals.get(key, 0) + value
    assert totals["color_found"] == totals["objects"]
    assert totals["shape_right"] >= 0.99 * totals["objects"]
    assert totals["background_right"] == 300 and totals["extra_colors"] == 0
    assert totals["relation_right"] >= 0.95 * totals["relations"] and totals["relations"] > 50


def test_classifier_regions_match_the_exact_masks():
    ious = []
    for scene in scenes.make_scenes(50, start=7):
        reading = classify.read_image(scene.image, scene.background)
        for obj, mask in zip(scene.objects, scene.masks):
            region = reading.masks[obj.color]
            ious.append((region & mask).sum() / (region | mask).sum())
    assert np.mean(ious) > 0.98
