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


def test_mask_modes():
    maps = to_image_size(two_concepts(), (32, 32), 16)
    soft = shape_mask(maps, 0, "soft")
    torch.testing.assert_close(soft, maps[:, 0])
    argmax = shape_mask(maps, 0, "argmax")
    assert torch.equal(argmax + shape_mask(maps, 1, "argmax"), torch.ones(1, 32, 32))  # exclusive
    mean = shape_mask(maps, 0, "mean_threshold")
    assert torch.equal(mean, (maps[:, 0] > maps[:, 0].mean()).float())
    value = shape_mask(maps, 0, "value_threshold", 0.85)
    assert 0 < value.sum() < (maps[:, 0] > 0.5).sum()
    with pytest.raises(ConceptAttentionError, match="soft, argmax"):
        shape_mask(maps, 0, "blur")


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
