"""Mask shaping and previews (pure tensor code)."""

import pytest
import torch

from concept_attention.errors import ConceptAttentionError
from concept_attention.masks import ConceptMaps, heatmaps, segmentation, shape_mask, to_image_size


def two_concepts():
    left = torch.tensor([[0.9, 0.2], [0.8, 0.4]])
    return torch.stack([left, 1 - left])[None]  # [1, 2, 2, 2], sums to 1


def test_upsampling_keeps_the_sum_and_crops_or_extends():
    maps = two_concepts()
    up = to_image_size(maps, (30, 35), cell=16)
    assert up.shape == (1, 2, 30, 35)
    torch.testing.assert_close(up.sum(1), torch.ones(1, 30, 35))
    assert up[0, 0, 0, 0] == pytest.approx(0.9) and up[0, 0, 0, -1] == pytest.approx(up[0, 0, 0, 31].item())


# Three concepts on a 2x3 token grid, written per pixel (each pixel's scores sum to 1, no ties).
PIXELS = [[(0.60, 0.30, 0.10), (0.10, 0.70, 0.20), (0.30, 0.25, 0.45)],
          [(0.20, 0.10, 0.70), (0.50, 0.20, 0.30), (0.35, 0.40, 0.25)]]
THREE = torch.tensor(PIXELS).permute(2, 0, 1)[None]  # [1, 3, 2, 3]
# Worked out by hand from PIXELS: where each concept is the largest score of its pixel...
ARGMAX = [[[1, 0, 0], [0, 1, 0]], [[0, 1, 0], [0, 0, 1]], [[0, 0, 1], [1, 0, 0]]]
# ...above its own mean (concept 0: 2.05/6 = 0.342, concept 1: 1.95/6 = 0.325, concept 2: 2.0/6 = 0.333)...
ABOVE_MEAN = [[[1, 0, 0], [0, 1, 1]], [[0, 1, 0], [0, 0, 1]], [[0, 0, 1], [1, 0, 0]]]
# ...and above 0.28.
ABOVE_028 = [[[1, 0, 1], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]], [[0, 0, 1], [1, 1, 0]]]


@pytest.mark.parametrize("mode,threshold,expected", [
    ("argmax", 0.5, ARGMAX), ("mean_threshold", 0.5, ABOVE_MEAN), ("value_threshold", 0.28, ABOVE_028)])
def test_mask_modes_give_the_masks_worked_out_by_hand(mode, threshold, expected):
    for concept in range(3):
        got = shape_mask(THREE, concept, mode, threshold)
        assert torch.equal(got, torch.tensor(expected[concept], dtype=torch.float32)[None]), (mode, concept)


def test_soft_mode_is_the_map_and_unknown_modes_are_refused():
    torch.testing.assert_close(shape_mask(THREE, 1, "soft"), THREE[:, 1])
    with pytest.raises(ConceptAttentionError, match="soft, argmax"):
        shape_mask(THREE, 0, "blur")


def test_concept_maps_pick_by_name():
    cm = ConceptMaps(("Dog", "grass"), two_concepts(), (32, 32), 16)
    assert torch.equal(cm.mask("dog", "argmax"), shape_mask(cm.at_image_size(), 0, "argmax"))
    with pytest.raises(ConceptAttentionError, match=r"'cat' is not in this concept list. The concepts are: Dog, grass"):
        cm.mask("cat")


def test_previews_are_comfyui_images():
    maps = to_image_size(two_concepts(), (32, 32), 16)
    heat = heatmaps(maps)
    assert heat.shape == (2, 32, 32, 3) and 0 <= heat.min() and heat.max() <= 1
    assert not torch.allclose(heat[0, 0, 0], heat[0, 0, -1])  # the map varies, so do the colours
    seg = segmentation(maps, image=torch.rand(1, 64, 64, 3))
    assert seg.shape == (1, 32, 32, 3) and 0 <= seg.min() and seg.max() <= 1
