"""Video maps to decoded frames, masks and previews (pure tensor code). The frame layout against ComfyUI's own
video VAEs is in test_hunyuan_video.py."""

import pytest
import torch

from concept_attention.errors import ConceptAttentionError
from concept_attention.masks import ConceptMaps, palette, shape_mask, to_image_size
from concept_attention.preview import labelled_previews, labelled_video_previews
from concept_attention.video import FrameLayout, decoded_frames, masks_output, previews


def video_maps(batch=2, concepts=3, frames=3, h=2, w=3, seed=0):
    """Soft maps [B, C, T, h, w] that differ in every latent frame."""
    logits = torch.randn(batch, concepts, frames, h, w, generator=torch.Generator().manual_seed(seed)) * 3
    return logits.softmax(dim=1)


def test_each_decoded_frame_reads_its_latent_frame():
    layout = FrameLayout(compression=4)
    assert decoded_frames(3, 4) == layout.frames(3) == 9
    sources = layout.sources(3).tolist()
    assert sources[0] == 0  # the first latent frame alone is one decoded frame
    for t in (1, 2):  # every later latent frame covers the next 4
        assert sources[1 + 4 * (t - 1): 1 + 4 * t] == [t] * 4
    assert FrameLayout(4, count=11).sources(3).tolist()[-3:] == [2, 2, 2]  # frames the encoder cut: the last


def test_video_maps_at_frame_size():
    maps = video_maps()
    cm = ConceptMaps(("a", "b", "c"), maps, (32, 48), 16, FrameLayout(4))
    up = cm.at_image_size()
    assert up.shape == (2, 3, 9, 32, 48)
    torch.testing.assert_close(up.sum(1), torch.ones(2, 9, 32, 48))
    for f, t in enumerate(FrameLayout(4).sources(3).tolist()):
        torch.testing.assert_close(up[:, :, f], to_image_size(maps[:, :, t], (32, 48), 16))


def test_masks_are_video_then_concept_then_frame():
    maps = torch.rand(2, 3, 9, 4, 5)
    masks = masks_output(maps)
    assert masks.shape == (2 * 3 * 9, 4, 5)
    for b, c, f in [(0, 0, 0), (0, 0, 8), (0, 1, 0), (1, 2, 4)]:
        assert torch.equal(masks[(b * 3 + c) * 9 + f], maps[b, c, f])


@pytest.mark.parametrize("mode", ["soft", "argmax", "mean_threshold", "value_threshold"])
def test_concept_mask_is_one_concepts_frames(mode):
    cm = ConceptMaps(("a", "b", "c"), video_maps(), (32, 48), 16, FrameLayout(4))
    mask = cm.mask("B", mode, 0.4)
    frames = cm.at_image_size().movedim(2, 1).flatten(0, 1)  # [B*F, C, H, W], each video's frames in order
    assert mask.shape == (2 * 9, 32, 48)
    assert torch.equal(mask, shape_mask(frames, 1, mode, 0.4))


def test_an_input_video_keeps_its_frame_count():
    cm = ConceptMaps(("a", "b"), video_maps(batch=1, concepts=2), (32, 48), 16, FrameLayout(4))
    fitted = cm.with_image_size((30, 40), frames=11)
    assert fitted.at_image_size().shape == (1, 2, 11, 30, 40)
    assert fitted.mask("a").shape == (11, 30, 40)
    image = ConceptMaps(("a", "b"), video_maps(batch=1, concepts=2)[:, :, 0], (32, 48), 16)
    assert image.with_image_size((30, 40), frames=11).at_image_size().shape == (1, 2, 30, 40)  # images: ignored


def test_previews_are_frame_sequences():
    cm = ConceptMaps(("a", "b", "c"), video_maps(), (32, 48), 16, FrameLayout(4))
    maps = cm.at_image_size()
    heat, seg = previews(maps)
    assert heat.shape == (2 * 3 * 9, 32, 48, 3) and seg.shape == (2 * 9, 32, 48, 3)
    assert 0 <= heat.min() and heat.max() <= 1
    clips = heat.reshape(2, 3, 9, 32, 48, 3)
    assert torch.equal(clips[0, 1, 1], clips[0, 1, 4])  # frames of one latent frame look alike
    assert not torch.equal(clips[0, 1, 0], clips[0, 1, 1])
    # one heat range per concept's clip: its brightest colour appears in one frame only, not in every frame
    brightest = clips[0, 1].sum(-1).flatten(1).max(1).values
    assert brightest.max() > brightest.min() + 0.1
    labels = seg.reshape(2, 9, 32, 48, 3)
    first, second = labels[0, 0], labels[0, 1]
    assert not torch.equal(first, second)


def test_previews_draw_over_the_decoded_frames():
    maps = ConceptMaps(("a", "b"), video_maps(batch=1, concepts=2), (32, 48), 16, FrameLayout(4)).at_image_size()
    frames = torch.rand(9, 64, 96, 3)  # decoded at twice the maps' size: resized frame by frame
    heat, seg = previews(maps, frames)
    plain_heat, plain_seg = previews(maps)
    assert heat.shape == plain_heat.shape and not torch.allclose(heat, plain_heat)
    small = torch.nn.functional.interpolate(frames.movedim(-1, 1), size=(32, 48), mode="bilinear",
                                            align_corners=False).movedim(1, -1)
    torch.testing.assert_close(seg, (0.5 * plain_seg + 0.5 * small).clamp(0, 1))
    with pytest.raises(ConceptAttentionError, match=r"has 8 frames, but these maps are of 1 video\(s\) of 9"):
        previews(maps, frames[:8])


def test_every_frame_carries_the_words_of_an_image_preview():
    """Each heat frame has its concept's caption below, each segmentation frame the legend: the strips an
    image's previews carry (concept_attention/preview.py)."""
    names = ("dog", "ball", "grass")
    maps = ConceptMaps(names, video_maps(), (32, 96), 16, FrameLayout(4)).at_image_size()
    frames = torch.rand(2 * 9, 32, 96, 3)
    heat, seg = labelled_video_previews(maps, names, frames)
    plain_heat, plain_seg = previews(maps, frames)
    image_heat, image_seg = labelled_previews(maps[:, :, 0], names, frames[::9])  # frame 0 of each video
    assert heat.shape == (2 * 3 * 9, image_heat.shape[1], 96, 3) and seg.shape == (2 * 9, image_seg.shape[1], 96, 3)
    assert torch.equal(heat[:, :32], plain_heat) and torch.equal(seg[:, :32], plain_seg)
    clips = heat.reshape(2, 3, 9, *heat.shape[1:])
    for c in range(3):
        assert (clips[:, c, :, 32:] == image_heat[c, 32:]).all()  # concept c's caption under all its frames
    assert (seg[:, 32:] == image_seg[0, 32:]).all()
