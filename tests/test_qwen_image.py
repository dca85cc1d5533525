"""attach() on tiny Qwen-Image family models (Qwen-Image, Edit 2509 / 2511, Layered) built through ComfyUI's
classes, driven through ComfyUI's samplers, against the masked-forward re-derivation (reference_qwen_image)."""

import pytest
import torch

import host
import reference_qwen_image as ref
from tiny_qwen_image import TEXT_WIDTH, latent, prompt, tiny_qwen_image

pytestmark = pytest.mark.host

TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def models():
    return {variant: tiny_qwen_image(seed=0, variant=variant) for variant in ("image", "edit_2511", "layered")}


@pytest.fixture(scope="module")
def qwen_concepts():
    from concept_attention import Concepts
    gen = torch.Generator().manual_seed(5)
    return Concepts(["cat", "sofa", "window"], torch.randn(3, TEXT_WIDTH, generator=gen))


def reference_image(seed=9, h=4, w=6):
    """A reference (edit) latent as ReferenceLatent gives it: [1, 16, 1, h, w]."""
    return torch.randn(1, 16, 1, h, w, generator=torch.Generator().manual_seed(seed))


def run(model, patched, x, *, cfg=1.0, steps=3, negative_seed=1, **extra):
    """Sample `patched` while recording what every block of `model`'s diffusion model received."""
    rec = ref.QwenBlockInputs(model.model.diffusion_model)
    try:
        out = host.sample(patched, prompt(**extra), prompt(seed=negative_seed, **extra), x, cfg=cfg, steps=steps)
    finally:
        rec.remove()
    return out, rec.calls


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_maps_equal_the_masked_forward(models, qwen_concepts, cfg):
    from concept_attention import attach
    model = models["image"]
    patched, recorder = attach(model, qwen_concepts, layers=[1, 3])
    _, calls = run(model, patched, latent(), cfg=cfg)
    expected = ref.expected_maps(calls, model.model.diffusion_model, qwen_concepts.embeddings, [1, 3])
    maps = recorder.maps()
    assert maps.shape == (2, 3, 4, 5)
    torch.testing.assert_close(maps, expected, **TOL)
    assert maps.std(dim=(2, 3)).min() > 1e-3, "the maps vary across tokens"
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows stay separate"
    torch.testing.assert_close(maps.sum(1), torch.ones(2, 4, 5))


def test_block_and_step_selection(models, qwen_concepts):
    from concept_attention import attach
    model = models["image"]
    dm = model.model.diffusion_model
    patched, recorder = attach(model, qwen_concepts, layers=[0, 2], steps=[0, 2])
    _, calls = run(model, patched, latent(), cfg=2.0, steps=4)
    expected = ref.expected_maps(calls, dm, qwen_concepts.embeddings, [0, 2], steps={0, 2})
    torch.testing.assert_close(recorder.maps(), expected, **TOL)
    every = ref.expected_maps(calls, dm, qwen_concepts.embeddings, [0, 1, 2, 3])
    assert not torch.allclose(recorder.maps(), every, atol=1e-4)


@pytest.mark.parametrize("variant", ["image", "edit_2511", "layered"])
def test_image_is_bit_identical(models, qwen_concepts, variant):
    from concept_attention import attach
    model = models[variant]
    patched, _ = attach(model, qwen_concepts, layers=[1, 3])
    extra = {"reference_latents": [reference_image()]}
    x = latent(frames=3 if variant == "layered" else 1)
    pos, neg = prompt(**extra), prompt(seed=1, **extra)
    for cfg in (1.0, 4.0):
        assert torch.equal(host.sample(model, pos, neg, x, cfg=cfg), host.sample(patched, pos, neg, x, cfg=cfg))


def test_bfloat16_weights(models, qwen_concepts):
    """Qwen-Image runs in bf16 (ComfyUI's supported dtypes: bf16, fp32): the image stays bit-identical and the
    maps stay close to the fp32 ones."""
    from concept_attention import attach
    bf16 = tiny_qwen_image(seed=0, dtype=torch.bfloat16)
    pos, neg = prompt(), prompt(seed=1)
    maps = {}
    for name, model in (("fp32", models["image"]), ("bf16", bf16)):
        patched, recorder = attach(model, qwen_concepts, layers=[1, 3])
        x = latent(batch=1)
        assert torch.equal(host.sample(model, pos, neg, x), host.sample(patched, pos, neg, x))
        maps[name] = recorder.maps()
    assert maps["bf16"].dtype == torch.float32 and torch.isfinite(maps["bf16"]).all()
    torch.testing.assert_close(maps["bf16"].sum(1), torch.ones_like(maps["bf16"].sum(1)))
    assert (maps["bf16"] - maps["fp32"]).abs().max() < 0.15


def test_edit_reference_tokens_stay_out_of_the_maps(models, qwen_concepts):
    """Qwen-Image-Edit (2509): reference latents follow the generated image; concepts see only the latter."""
    from concept_attention import attach
    model = models["image"]
    patched, recorder = attach(model, qwen_concepts, layers=[1, 3])
    _, calls = run(model, patched, latent(), cfg=2.0, reference_latents=[reference_image()])
    assert calls[0]["blocks"][0]["img"].shape[1] == 4 * 5 + 2 * 3, "generated + reference tokens"
    expected = ref.expected_maps(calls, model.model.diffusion_model, qwen_concepts.embeddings, [1, 3])
    assert recorder.maps().shape == (2, 3, 4, 5)
    torch.testing.assert_close(recorder.maps(), expected, **TOL)


def test_edit_2511_concepts_use_the_generated_images_timestep(models, qwen_concepts):
    """2511 runs the reference tokens at timestep 0 (temb has 2B rows); the concept stream, like the prompt,
    uses the generated image's timestep, the first half."""
    from concept_attention import attach
    model = models["edit_2511"]
    dm = model.model.diffusion_model
    patched, recorder = attach(model, qwen_concepts, layers=[1, 3])
    _, calls = run(model, patched, latent(), cfg=2.0, reference_latents=[reference_image()])
    block = calls[0]["blocks"][0]
    assert block["temb"].shape[0] == 2 * calls[0]["t"].shape[0] and block["zero_from"] == 4 * 5
    expected = ref.expected_maps(calls, dm, qwen_concepts.embeddings, [1, 3])
    torch.testing.assert_close(recorder.maps(), expected, **TOL)
    at_zero = ref.expected_maps(calls, dm, qwen_concepts.embeddings, [1, 3], concept_timestep=torch.zeros_like)
    assert not torch.allclose(recorder.maps(), at_zero, atol=1e-4)


def test_layered_gives_one_map_per_layer(models, qwen_concepts):
    """Qwen-Image-Layered: latent frames are layers (ids (layer, h, w)); maps are [B, C, layers, h, w], each
    layer's tokens in place, with the input image as a reference that stays out of the maps."""
    from concept_attention import attach
    model = models["layered"]
    patched, recorder = attach(model, qwen_concepts, layers=[1, 3])
    out, calls = run(model, patched, latent(frames=3), cfg=2.0, reference_latents=[reference_image()])
    assert calls[0]["blocks"][0]["img"].shape[1] == 3 * 4 * 5 + 2 * 3
    expected = ref.expected_maps(calls, model.model.diffusion_model, qwen_concepts.embeddings, [1, 3])
    maps = recorder.maps()
    assert maps.shape == (2, 3, 3, 4, 5)
    torch.testing.assert_close(maps, expected, **TOL)
    assert not torch.allclose(maps[:, :, 0], maps[:, :, 1], atol=1e-3), "layers are not mixed"
    # the masks node gives each layer's masks, sample-major, as LatentCutToBatch(dim="t") lays out the layers
    from concept_attention.masks import to_image_size
    masks, _, segmentation, _ = host.load_pack().nodes.ConceptAttentionMasks.execute(recorder, {"samples": out}).result
    assert masks.shape == (2 * 3 * 3, 64, 80) and segmentation.shape[0] == 2 * 3
    for b, t in ((0, 2), (1, 0)):
        layer_masks = masks.reshape(2, 3, 3, 64, 80)[b, t]  # [C, H, W] of sample b's layer t
        torch.testing.assert_close(layer_masks, to_image_size(maps[b, :, t][None], (64, 80), 16)[0])


def test_concepts_sit_at_the_first_text_position(models, qwen_concepts):
    """SPEC.md: the first text position after the image grid offset (txt_start on all three axes); the
    re-derivation with concepts one position later, or at 0, gives other maps."""
    from concept_attention import attach
    model = models["image"]
    dm = model.model.diffusion_model
    patched, recorder = attach(model, qwen_concepts, layers=[1, 3])
    x = latent(h=12, w=10)  # token grid 6 x 5: txt_start = 3
    _, calls = run(model, patched, x, cfg=1.0)
    start = ref.first_text_position(calls[0]["x_shape"])
    assert start == 3
    # the explicit rotation at txt_start is the model's own rotation of its first prompt token
    probe = torch.randn(1, 1, 1, 32, generator=torch.Generator().manual_seed(0))
    first_text_pe = calls[0]["blocks"][0]["pe"][:1, :, :1]
    torch.testing.assert_close(ref.explicit_rope(probe, start, dm.pe_embedder.axes_dim),
                               ref.rotate(probe, first_text_pe), rtol=1e-5, atol=1e-6)
    maps = recorder.maps()
    torch.testing.assert_close(maps, ref.expected_maps(calls, dm, qwen_concepts.embeddings, [1, 3]), **TOL)
    for elsewhere in (0, start + 1):
        moved = ref.expected_maps(calls, dm, qwen_concepts.embeddings, [1, 3], concept_position=elsewhere)
        assert not torch.allclose(maps, moved, atol=1e-4), f"position {elsewhere} must give other maps"


def test_prompt_padding_is_never_seen_by_the_concepts(models, qwen_concepts):
    """The prompt's padded tokens are masked for the image; concepts never see the prompt at all. Changing the
    padded tokens' features changes neither the image nor the maps."""
    from concept_attention import attach
    model = models["image"]
    patched, recorder = attach(model, qwen_concepts, layers=[1, 3])
    pos, neg = prompt(tokens=8, padded=3), prompt(seed=1)
    other = [[pos[0][0].clone(), dict(pos[0][1])]]
    other[0][0][:, -3:] = torch.randn(1, 3, TEXT_WIDTH, generator=torch.Generator().manual_seed(11))
    rec = ref.QwenBlockInputs(model.model.diffusion_model)
    try:
        image = host.sample(patched, pos, neg, latent(), cfg=2.0)
    finally:
        rec.remove()
    assert rec.calls[0]["blocks"][0]["mask"] is not None
    maps = recorder.maps()
    torch.testing.assert_close(maps, ref.expected_maps(rec.calls, model.model.diffusion_model,
                                                       qwen_concepts.embeddings, [1, 3]), **TOL)
    assert torch.equal(host.sample(patched, other, neg, latent(), cfg=2.0), image)
    torch.testing.assert_close(recorder.maps(), maps, rtol=0, atol=1e-6)


def test_from_image_stops_after_the_last_needed_block(models, qwen_concepts):
    from concept_attention.from_image import maps_from_latent
    model = models["image"]
    dm = model.model.diffusion_model
    calls = []
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: calls.append(i))
               for i, b in enumerate(dm.transformer_blocks)]
    try:
        result = maps_from_latent(model, qwen_concepts, latent(batch=1), prompt(), layers=[1], samples=2)
    finally:
        for h in handles:
            h.remove()
    assert calls == [0, 1, 0, 1]
    assert result.maps.shape == (1, 3, 4, 5)
    torch.testing.assert_close(result.maps.sum(1), torch.ones(1, 4, 5))


def test_default_blocks_and_errors(models, qwen_concepts):
    from concept_attention import Concepts, attach
    from concept_attention.adapters import adapter_for
    from concept_attention.errors import ConceptAttentionError

    full_depth = tiny_qwen_image(num_layers=60)
    adapter = adapter_for(full_depth)
    assert adapter.family == "Qwen-Image" and adapter.default_blocks() == list(range(45, 60))
    for variant in ("edit_2511", "layered"):
        assert adapter_for(models[variant]).family == "Qwen-Image"
    with pytest.raises(ConceptAttentionError, match=r"Block index 4 is out of range.*valid indices are 0-3"):
        attach(models["image"], qwen_concepts, layers=[4])
    with pytest.raises(ConceptAttentionError, match="width 32"):
        attach(models["image"], Concepts(["a"], torch.zeros(1, 7)))
    assert adapter_for(host.tiny_flux()).family == "Flux.1"  # supports() is exact both ways
    listed = r"supported: .*Qwen-Image \(Qwen-Image, Qwen-Image-Edit \(2509, 2511\), Qwen-Image-Layered"
    with pytest.raises(ConceptAttentionError, match=r"does not support this model: SDXL.*" + listed):
        attach(tiny_sdxl(), qwen_concepts)


def tiny_sdxl():
    import comfy.supported_models
    from comfy.model_patcher import ModelPatcher

    unet = dict(use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False,
                adm_in_channels=None, in_channels=4, model_channels=32, num_res_blocks=[1, 1],
                transformer_depth=[1, 1], channel_mult=[1, 2], transformer_depth_middle=1,
                use_linear_in_transformer=False, context_dim=32, num_head_channels=16,
                transformer_depth_output=[1, 1, 1, 1], use_temporal_attention=False, use_temporal_resblock=False)
    return ModelPatcher(comfy.supported_models.SDXL(unet).get_model({}), torch.device("cpu"), torch.device("cpu"))
