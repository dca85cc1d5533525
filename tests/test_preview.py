"""The preview images' words: the segmentation's legend and each heatmap's concept name (pure tensor and PIL
code, no ComfyUI)."""

import torch

from concept_attention.masks import PALETTE, heatmaps, palette, segmentation
from concept_attention.preview import labelled_previews

LIGHT = 170  # text is drawn light on the dark strip; no strip background pixel is this bright


def to_bytes(image):
    return (image * 255).round().to(torch.uint8)


def swatch_box(strip, color, side=8):
    """(top, bottom, left, right) of the side x side squares of exactly this colour, or None (a square, so
    that grey text edges of the same value do not count)."""
    hit = (to_bytes(strip) == to_bytes(color)).all(-1).float()
    full = torch.nn.functional.avg_pool2d(hit[None, None], side, stride=1)[0, 0] == 1
    if not full.any():
        return None
    ys, xs = full.nonzero().T
    return int(ys.min()), int(ys.max()) + side - 1, int(xs.min()), int(xs.max()) + side - 1


def text_width_right_of(strip, box):
    """How many columns right of the swatch, on its rows, hold light (text) pixels."""
    top, bottom, _, right = box
    band = to_bytes(strip[top:bottom + 1, right + 1:])
    return int((band > LIGHT).all(-1).any(0).sum())


def soft_maps(b, c, h, w, seed=0):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed)).softmax(1)


def test_palette_is_distinct_past_ten_and_fixed():
    colors = palette(24)
    assert colors.shape == (24, 3)
    assert torch.equal(colors[:10], PALETTE)
    distances = torch.cdist(colors, colors) + torch.eye(24) * 10
    assert distances.min() > 0.2  # far apart in RGB, not merely unequal
    assert len({tuple(c) for c in to_bytes(colors).tolist()}) == 24
    assert torch.equal(palette(12), colors[:12])  # a longer list keeps the shorter list's colours
    assert ((colors >= 0) & (colors <= 1)).all()


def test_segmentation_colours_each_pixel_by_its_strongest_concept_past_ten():
    maps = soft_maps(1, 14, 6, 7)
    seg = segmentation(maps)
    torch.testing.assert_close(seg, palette(14)[maps.argmax(1)])


def test_segmentation_carries_a_legend_of_every_concept():
    names = [f"thing {i}" for i in range(24)]
    maps, image = soft_maps(2, 24, 96, 512), torch.rand(2, 96, 512, 3)
    _, seg = labelled_previews(maps, names, image)
    assert seg.shape[0] == 2 and seg.shape[2:] == (512, 3) and seg.shape[1] > 96
    torch.testing.assert_close(seg[:, :96], segmentation(maps, image))  # the preview itself is unchanged
    legend = seg[0, 96:]
    assert torch.equal(seg[1, 96:], legend)
    for i, color in enumerate(palette(24)):
        box = swatch_box(legend, color)
        assert box is not None, f"no swatch of concept {i}'s colour in the legend"
        assert text_width_right_of(legend, box) > 10, f"no name next to concept {i}'s swatch"


def test_longer_names_take_more_room_and_long_lists_wrap():
    maps = soft_maps(1, 2, 32, 400)
    _, short = labelled_previews(maps, ["a", "b"])
    _, long = labelled_previews(maps, ["a", "a much longer name"])
    box_short, box_long = (swatch_box(s[0, 32:], palette(2)[1]) for s in (short, long))
    assert text_width_right_of(long[0, 32:], box_long) > 3 * text_width_right_of(short[0, 32:], box_short)
    _, many = labelled_previews(soft_maps(1, 12, 32, 400), [f"concept {i}" for i in range(12)])
    assert many.shape[1] - 32 > 2 * (short.shape[1] - 32)  # more rows of legend, none cut off


def test_each_heatmap_carries_its_concepts_name_and_colour():
    names = ["dog", "grass", "sky"]
    maps, image = soft_maps(2, 3, 64, 256), torch.rand(2, 64, 256, 3)
    heat, _ = labelled_previews(maps, names, image)
    assert heat.shape[0] == 6 and heat.shape[2:] == (256, 3)
    torch.testing.assert_close(heat[:, :64], heatmaps(maps, image))
    colors = palette(3)
    for k in range(6):  # image-major, as the masks
        strip = heat[k, 64:]
        own = k % 3
        box = swatch_box(strip, colors[own])
        assert box is not None and text_width_right_of(strip, box) > 5
        assert all(swatch_box(strip, colors[o]) is None for o in range(3) if o != own)
    assert torch.equal(heat[0, 64:], heat[3, 64:]) and not torch.equal(heat[0, 64:], heat[1, 64:])
