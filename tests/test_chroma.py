"""attach() on tiny Chroma and Chroma Radiance models built through ComfyUI's classes, driven through ComfyUI's
samplers, against the masked forward of tests/reference_chroma.py."""

import pytest
import torch

import host
import reference_chroma as ref
import tiny_chroma

pytestmark = pytest.mark.host

RADIANCE_PATCH = tiny_chroma.RADIANCE_CONFIG["patch_size"]


@pytest.fixture(scope="module")
def models():
    return {"chroma": tiny_chroma.tiny_chroma(seed=0), "radiance": tiny_chroma.tiny_chroma_radiance(seed=0),
            "radiance-sequential": tiny_chroma.tiny_chroma_radiance(seed=0, use_sequential_txt_ids=True)}


@pytest.fixture(scope="module")
def t5():
    return tiny_chroma.tiny_chroma_clip(seed=1)


@pytest.fixture(scope="module")
def concepts(t5):
    from concept_attention import encode_concepts
    return encode_concepts(t5, ["cat", "sofa", "window"])


def noise(kind, batch=2, seed=3, size=(8, 10)):
    """A latent of `size` tokens: Flux latents for Chroma, pixels for Radiance."""
    shape = (batch, 16, 2 * size[0], 2 * size[1]) if kind == "chroma" else \
        (batch, 3, RADIANCE_PATCH * size[0], RADIANCE_PATCH * size[1])
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def patch_of(kind):
    return 2 if kind == "chroma" else RADIANCE_PATCH


def zero_ids(concepts):
    return torch.zeros(len(concepts), 3)


def sample_recording(model, sampled, positive, negative, latent, *, cfg, steps=3):
    """Sample `sampled` (the model or a patched clone of it) while recording every double block's inputs."""
    dm = model.model.diffusion_model
    rec = ref.ChromaBlockInputs(dm)
    try:
        out = host.sample(sampled, positive, negative, latent, cfg=cfg, steps=steps)
    finally:
        rec.remove()
    return out, rec.calls


def reference_maps(model, kind, calls, concepts, blocks, ids, steps=None):
    dm = model.model.diffusion_model
    return ref.expected_maps(calls, lambda call: ref.chroma_reference(dm, call, concepts.embeddings, blocks, ids),
                             blocks, steps, patch=patch_of(kind))


@pytest.mark.parametrize("kind", ["chroma", "radiance"])
@pytest.mark.parametrize("cfg,negative,guidance", [(1.0, "", None), (3.0, "a blurry photo of a dog", None),
                                                   (3.0, "a dog on a rug", 4.0)])
def test_maps_equal_the_masked_forward(models, t5, concepts, kind, cfg, negative, guidance):
    from concept_attention import attach
    model = models[kind]
    patched, recorder = attach(model, concepts, layers=[1, 2])
    extra = {} if guidance is None else {"guidance": guidance}  # the positive prompt's guidance only
    _, calls = sample_recording(model, patched, host.conditioning(t5, "a cat on a sofa", **extra),
                                host.conditioning(t5, negative), noise(kind), cfg=cfg)
    if guidance is not None:  # prompts of one length: both in one call, each row with its own modulation
        assert all(sorted(call["cond_or_uncond"]) == [0, 1] for call in calls)
    expected = reference_maps(model, kind, calls, concepts, [1, 2], zero_ids(concepts))
    maps = recorder.maps()
    assert maps.shape == (2, 3, 8, 10)
    torch.testing.assert_close(maps, expected, rtol=1e-4, atol=1e-5)
    assert maps.std(dim=(2, 3)).min() > 1e-3, "the maps vary across tokens"
    assert not torch.allclose(maps[0], maps[1], atol=1e-3), "batch rows stay separate"


def test_block_and_step_selection(models, t5, concepts):
    from concept_attention import attach
    model = models["chroma"]
    patched, recorder = attach(model, concepts, layers=[0, 2], steps=[0, 2])
    _, calls = sample_recording(model, patched, host.conditioning(t5, "a cat on a sofa"), host.conditioning(t5, ""),
                                noise("chroma", batch=1), cfg=2.0, steps=4)
    expected = reference_maps(model, "chroma", calls, concepts, [0, 2], zero_ids(concepts), steps={0, 2})
    torch.testing.assert_close(recorder.maps(), expected, rtol=1e-4, atol=1e-5)
    everything = reference_maps(model, "chroma", calls, concepts, [0, 1, 2], zero_ids(concepts))
    assert not torch.allclose(recorder.maps(), everything, atol=1e-4)


@pytest.mark.parametrize("kind", ["chroma", "radiance"])
def test_image_is_bit_identical(models, t5, concepts, kind):
    from concept_attention import attach
    model = models[kind]
    patched, _ = attach(model, concepts)
    pos, neg = host.conditioning(t5, "a cat on a sofa"), host.conditioning(t5, "")
    for cfg in (1.0, 4.0):
        latent = noise(kind)
        assert torch.equal(host.sample(model, pos, neg, latent, cfg=cfg),
                           host.sample(patched, pos, neg, latent, cfg=cfg))


def test_concept_modulation_does_not_depend_on_the_prompt(models, t5, concepts):
    """In block 0 the image tokens' keys and values come from the noisy latent and the modulation only, so
    value-space and cross-attention-space scores there see the prompt only through the concept stream's
    modulation. Two prompts of different lengths must give identical maps; a different guidance (which
    Chroma's modulation is built from) must not."""
    from concept_attention.from_image import maps_from_latent
    model = models["chroma"]
    latent = noise("chroma", batch=1)

    def maps(text, space, **extra):
        return maps_from_latent(model, concepts, latent, host.conditioning(t5, text, **extra), layers=[0],
                                space=space).maps

    for space in ("value", "cross_attention"):
        cat = maps("a cat", space)
        torch.testing.assert_close(maps("a large dog asleep on a red velvet sofa by the window", space), cat,
                                   rtol=0, atol=1e-6)
        assert not torch.allclose(maps("a cat", space, guidance=4.0), cat, atol=1e-4)


@pytest.mark.parametrize("kind,sequential_rule", [("chroma", False), ("radiance", False),
                                                   ("radiance-sequential", True), ("radiance-forced", True)])
def test_concepts_sit_at_their_words_text_position(models, t5, kind, sequential_rule):
    """Zero text ids: every concept at (0, 0, 0), whatever its span. Sequential text ids (the checkpoint's
    __sequential__ key, or ChromaRadianceOptions' force_sequential_txt_ids): at (first word token, 0, 0)."""
    from comfy_extras.nodes_chroma_radiance import ChromaRadianceOptions
    from concept_attention import Concepts, attach
    from concept_attention.concepts import TokenSpan

    model = models["radiance" if kind == "radiance-forced" else kind]
    if kind == "radiance-forced":
        model = ChromaRadianceOptions.execute(model=model, preserve_wrapper=True, start_sigma=1.0, end_sigma=0.0,
                                              nerf_tile_size=-1, force_sequential_txt_ids=True).args[0]
    starts = [0, 5, 2]
    spans = [TokenSpan(s, s + 1, s + 2) for s in starts]
    embeddings = torch.randn(3, tiny_chroma.TEXT_WIDTH, generator=torch.Generator().manual_seed(4))
    concepts = Concepts(["cat", "sofa", "window"], embeddings, spans)
    patched, recorder = attach(model, concepts, layers=[0, 2])
    _, calls = sample_recording(model, patched, host.conditioning(t5, "a cat on a sofa"), host.conditioning(t5, ""),
                                noise(kind, batch=1), cfg=2.0, steps=2)
    word_ids = torch.zeros(3, 3)
    word_ids[:, 0] = torch.tensor(starts, dtype=torch.float32)
    expected_ids, other_ids = (word_ids, zero_ids(concepts)) if sequential_rule else (zero_ids(concepts), word_ids)
    kind = "chroma" if kind == "chroma" else "radiance"
    torch.testing.assert_close(recorder.maps(), reference_maps(model, kind, calls, concepts, [0, 2], expected_ids),
                               rtol=1e-4, atol=1e-5)
    assert not torch.allclose(recorder.maps(), reference_maps(model, kind, calls, concepts, [0, 2], other_ids),
                              atol=1e-4)


def test_the_models_attention_mask_is_kept_and_concepts_need_none(models, t5, concepts):
    """A conditioning with a joint [prompt + image] attention mask (as StyleModelApply or regional-prompt
    nodes make them): the image stays bit-identical and the maps equal the masked forward, in which the
    prompt and image rows use the model's mask and the concept rows the method's own."""
    from concept_attention import attach
    model = models["chroma"]
    pos_text = host.conditioning(t5, "a cat on a sofa")
    tokens, grid = pos_text[0][0].shape[1], (8, 10)
    joint = tokens + grid[0] * grid[1]
    bias = torch.zeros(1, joint, joint)
    bias[:, tokens:, :tokens // 2] = -4.0  # the image looks less at the first half of the prompt
    bias[:, :tokens, tokens + 7] = float("-inf")  # nor does the prompt look at image token 7
    extra = {"attention_mask": bias, "attention_mask_img_shape": grid}
    pos = host.conditioning(t5, "a cat on a sofa", **extra)
    neg = host.conditioning(t5, "")
    latent = noise("chroma", batch=1)
    patched, recorder = attach(model, concepts, layers=[1, 2])
    image, calls = sample_recording(model, patched, pos, neg, latent, cfg=2.0)
    assert torch.equal(image, host.sample(model, pos, neg, latent, cfg=2.0))
    assert any(block["attn_mask"] is not None for call in calls for block in call["blocks"].values())
    expected = reference_maps(model, "chroma", calls, concepts, [1, 2], zero_ids(concepts))
    torch.testing.assert_close(recorder.maps(), expected, rtol=1e-4, atol=1e-5)


def test_skipped_blocks_update_nothing(t5, concepts):
    """Blocks in `skip_mmdit` are never called: the concept stream passes them unchanged, as the prompt does,
    and they add nothing to the maps."""
    from concept_attention import attach
    model = tiny_chroma.tiny_chroma(seed=0)
    model.model.diffusion_model.skip_mmdit = [1]
    patched, recorder = attach(model, concepts, layers=[0, 1, 2])
    pos, neg = host.conditioning(t5, "a cat on a sofa"), host.conditioning(t5, "")
    image, calls = sample_recording(model, patched, pos, neg, noise("chroma", batch=1), cfg=2.0)
    assert all(sorted(call["blocks"]) == [0, 2] for call in calls)
    assert torch.equal(image, host.sample(model, pos, neg, noise("chroma", batch=1), cfg=2.0))
    expected = reference_maps(model, "chroma", calls, concepts, [0, 2], zero_ids(concepts))
    torch.testing.assert_close(recorder.maps(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["chroma", "radiance"])
def test_from_image_stops_after_the_last_needed_block(models, t5, concepts, kind):
    from concept_attention.from_image import maps_from_latent
    dm = models[kind].model.diffusion_model
    called = []
    handles = [block.register_forward_pre_hook(lambda m, a, name=name, i=i: called.append((name, i)))
               for name, blocks in (("double", dm.double_blocks), ("single", dm.single_blocks))
               for i, block in enumerate(blocks)]
    rec = ref.ChromaBlockInputs(dm)
    try:
        result = maps_from_latent(models[kind], concepts, noise(kind, batch=1), host.conditioning(t5, "a cat"),
                                  samples=2, layers=[1])
    finally:
        rec.remove()
        for h in handles:
            h.remove()
    assert called == [("double", 0), ("double", 1)] * 2  # two samples, each stopped after block 1
    per_sample = [reference_maps(models[kind], kind, [call], concepts, [1], zero_ids(concepts)) for call in rec.calls]
    torch.testing.assert_close(result.maps, sum(per_sample) / 2, rtol=1e-4, atol=1e-5)


def test_radiance_grid_and_pixels_follow_its_patch_size(t5, concepts):
    """Pixel space: one token per patch of pixels (a 16-pixel patch here); sizes off the patch are padded."""
    from concept_attention import attach
    model = tiny_chroma.tiny_chroma_radiance(seed=2, patch_size=16)
    patched, recorder = attach(model, concepts)
    latent = torch.randn(1, 3, 40, 72, generator=torch.Generator().manual_seed(5))
    out = host.sample(patched, host.conditioning(t5, "a cat"), host.conditioning(t5, ""), latent, steps=2)
    maps = recorder.concept_maps_for(out)
    assert maps.maps.shape == (1, 3, 3, 5) and maps.pixels_per_token == 16 and maps.image_size == (40, 72)
    assert maps.at_image_size().shape == (1, 3, 40, 72)


def test_each_model_gets_its_own_family_and_errors_name_them(models, concepts):
    import comfy.supported_models
    from comfy.model_patcher import ModelPatcher
    from concept_attention import attach
    from concept_attention.adapters import adapter_for
    from concept_attention.adapters.chroma import ChromaAdapter, ChromaRadianceAdapter
    from concept_attention.errors import ConceptAttentionError

    assert type(adapter_for(models["chroma"])) is ChromaAdapter
    assert type(adapter_for(models["radiance"])) is ChromaRadianceAdapter
    assert adapter_for(models["chroma"]).default_blocks() == [2]  # the last quarter of 3, rounded up
    with pytest.raises(ConceptAttentionError, match=r"Block index 3 is out of range.*valid indices are 0-2"):
        attach(models["radiance"], concepts, layers=[3])
    pixart = comfy.supported_models.PixArtAlpha(dict(image_model="pixart_alpha", input_size=8, patch_size=2,
                                                     in_channels=4, hidden_size=64, depth=1, num_heads=2))
    with pytest.raises(ConceptAttentionError,
                       match=r"does not support this model: PixArt-Alpha \(a cross-attention.*Chroma \(.*"
                             r"Chroma Radiance \("):
        attach(ModelPatcher(pixart.get_model({}), torch.device("cpu"), torch.device("cpu")), concepts)
