"""The tiny pixel-space Flux: built from ComfyUI's own classes, an exact codec, a small fixture, and a
training script whose start reproduces the fixture's recorded losses (the full run is a documented command)."""

import pytest
import torch

from concept_attention.eval import scenes
from concept_attention.eval.tiny_model import FIXTURE, Vocab, decode_latents, encode_images

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def tiny():
    from concept_attention.eval.tiny_model import load

    return load()


def test_codec_is_exactly_invertible():
    images = torch.from_numpy(scenes.make_scene(3).image)[None]
    latent = encode_images(images)
    assert latent.shape == (1, 12, 16, 16)
    assert torch.allclose(decode_latents(latent), images, atol=1e-6)


def test_fixture_is_small_and_self_describing(tiny):
    assert FIXTURE.stat().st_size <= 5 * 1024 * 1024
    meta = tiny.metadata
    assert {"model_config", "text_config", "vocab", "train_config", "first_losses"} <= set(meta)
    assert tuple(meta["vocab"]) == scenes.vocabulary()


def test_model_is_comfyui_flux_with_a_pixel_latent(tiny):
    import comfy.model_base
    import comfy.supported_models

    from concept_attention.adapters import adapter_for

    model = tiny.model_patcher.model
    assert isinstance(model, comfy.model_base.Flux)
    assert isinstance(model.model_config, comfy.supported_models.Flux)
    assert model.latent_format.latent_channels == 12 and model.latent_format.spacial_downscale_ratio == 2
    adapter = adapter_for(tiny.model_patcher)
    assert adapter.family == "Flux.1" and adapter.num_blocks == 6 and len(model.diffusion_model.single_blocks) == 1


def test_text_encoder_and_concepts(tiny):
    context = tiny.context(["a red circle on sand", ""])
    assert context.shape == (2, 12, 64)
    concepts = tiny.concepts(["red circle", "sand"])
    assert concepts.names == ("red circle", "sand") and concepts.embeddings.shape == (2, 64)
    with pytest.raises(ValueError, match="vocabulary"):
        tiny.concepts(["unicorn"])
    assert len(Vocab()) == len(scenes.vocabulary()) + 2


def test_training_prefix_reproduces_the_fixture(tiny):
    """The first steps of `python -m concept_attention.eval.train` give the losses stored in the fixture."""
    from concept_attention.eval.train import train

    cfg = tiny.metadata["train_config"]
    *_, losses, _ = train(cfg, log=lambda *a, **k: None, stop_after=3)
    assert losses == pytest.approx(tiny.metadata["first_losses"][:3], rel=1e-4)


def test_training_takes_model_overrides_and_a_device():
    """`--model` overrides reach ComfyUI's Flux; the step runs on the given device (here the CPU)."""
    from concept_attention.eval.train import train

    dm, text_encoder, ema_dm, _, losses, cfg = train({"batch": 2, "model": {"depth": 2, "depth_single_blocks": 3}},
                                                     log=lambda *a, **k: None, stop_after=1, device="cpu")
    assert len(dm.double_blocks) == 2 and len(dm.single_blocks) == 3 and len(ema_dm.single_blocks) == 3
    assert cfg["model"] == {"depth": 2, "depth_single_blocks": 3}
    assert len(losses) == 1 and losses[0] > 0
    assert next(dm.parameters()).device.type == next(text_encoder.parameters()).device.type == "cpu"


def test_object_weighted_loss_follows_the_codecs_layout():
    """--object-weight: the weight of every latent element is that of its pixel (object or the ring of one pixel
    around it: the weight; elsewhere 1), laid out exactly as the codec lays out the pixel's colour channels."""
    import numpy as np

    from concept_attention.eval.train import loss_weights

    objects = np.stack([~scenes.make_scene(seed).background_mask for seed in (3, 4)])
    ring = np.zeros_like(objects)
    for b, y, x in zip(*np.nonzero(objects)):
        ring[b, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = True
    weight_image = np.where(ring, 4.0, 1.0).astype(np.float32)
    as_rgb = torch.from_numpy(np.repeat(weight_image[..., None], 3, axis=-1))
    expected = (encode_images(as_rgb) + 1) / 2  # the codec is elementwise 2x-1, then a fixed rearrangement
    assert torch.equal(loss_weights(torch.from_numpy(objects), 4.0), expected)
    assert torch.equal(loss_weights(torch.from_numpy(objects), 1.0), torch.ones_like(expected))
