"""Checks shared by the video families' tests."""


def assert_frames_follow_the_vae(layout, vae, latent_frames: int = 5, input_frames: int = 21) -> None:
    """A family's FrameLayout maps frames as the family's own ComfyUI VAE does: each latent frame to the frames it
    decodes to, and an input video of any length to the latent frames it encodes to."""
    decoded, encoded = vae.upscale_ratio[0], vae.downscale_ratio[0]
    for count in range(1, latent_frames + 1):
        assert layout.frames(count) == decoded(count)
        sources = layout.sources(count).tolist()
        # causal: decoded frame f comes from the first latent frame whose decode reaches it
        assert sources == [min(t for t in range(count) if decoded(t + 1) > f) for f in range(len(sources))]
    for frames in range(1, input_frames + 1):  # an input video of any length keeps its frames
        sources = layout.with_count(frames).sources(encoded(frames))
        assert len(sources) == frames and sources.max() == encoded(frames) - 1


def check_from_image_node_on_a_video_latent(model, clip, tiny_family, channels: int) -> None:
    """The From Image node on a sampler's video LATENT of 3 latent frames (no VAE; `tiny_family` gives
    `video_vae()` and `video_latent()`), drawn over its decoded frames; a frame count that is not the latent's
    decoded one, or an image latent, is a clear error."""
    import pytest
    import torch

    import host
    from concept_attention.errors import ConceptAttentionError

    node = host.load_pack().nodes.ConceptAttentionFromImage
    frames = tiny_family.video_vae().upscale_ratio[0](3)
    latent = {"samples": tiny_family.video_latent(batch=1, frames=3)}
    video = torch.rand(frames, 32, 48, 3)
    masks, heat, seg, concept_maps = node.execute(model, clip, "dog, grass", latent=latent, image=video).result
    assert concept_maps.maps.shape == (1, 2, 3, 2, 3)
    assert masks.shape == (2 * frames, 32, 48) and heat.shape[0] == 2 * frames and seg.shape[0] == frames
    assert masks.reshape(2, frames, 32, 48).flatten(2).std(-1).min() > 1e-3  # the masks vary across pixels
    with pytest.raises(ConceptAttentionError, match=f"has {frames + 1} frames, but these maps are of 1 video"):
        node.execute(model, clip, "dog, grass", latent=latent, image=torch.rand(frames + 1, 32, 48, 3))
    with pytest.raises(ConceptAttentionError,
                       match=rf"latents of {channels} channels \(\[batch, {channels}, frames, height/8"):
        node.execute(model, clip, "dog, grass", latent={"samples": torch.zeros(1, channels, 4, 6)})
