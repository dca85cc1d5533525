"""attach() on tiny Flux.2 dev / Klein models built through ComfyUI's classes, driven through its samplers,
against a plainly written masked forward (reference_flux2.py). The comparison with the paper authors' own Flux.2
code is in test_flux2_authors.py."""

import pytest
import torch

import host
import reference_flux2 as ref
import tiny_flux2
from tiny_flux2 import TEXT_WIDTH, prompt

pytestmark = pytest.mark.host

NAMES = ["cat", "sofa", "window"]
# Spans as Flux.2 dev's encoder gives them: the word, then the template's closing [/INST], no padding.
DEV_SPANS = [(40, 41, 42), (38, 41, 42), (40, 41, 42)]
# As Klein's: "<|im_start|>user\n" (3 tokens), the word, the template's tail, padded on the right to 512.
KLEIN_SPANS = [(3, 4, 512), (3, 5, 512), (3, 4, 512)]
# SPEC.md's positions for them, worked out by hand: dev's 42-token encodings are left-padded to 512 by ComfyUI, so
# the last word token (row 40) lands at 470 + 40 = 510, the authors' text id; Klein's last word token keeps its row.
POSITIONS = {tuple(DEV_SPANS): [510, 510, 510], tuple(KLEIN_SPANS): [3, 4, 3]}


@pytest.fixture(scope="module")
def dev():
    return tiny_flux2.tiny_flux2(seed=0)


@pytest.fixture(scope="module")
def klein():
    return tiny_flux2.tiny_flux2(seed=1, klein=True)


def make_concepts(spans, seed=11):
    from concept_attention import Concepts
    from concept_attention.concepts import TokenSpan
    embeddings = torch.randn(len(NAMES), TEXT_WIDTH, generator=torch.Generator().manual_seed(seed))
    return Concepts(NAMES, embeddings, None if spans is None else [TokenSpan(*s) for s in spans])


def sample_recording(model, patched, positive, negative, latent, **kw):
    dm = model.model.diffusion_model
    inputs = ref.Flux2BlockInputs(dm)
    try:
        out = host.sample(patched, positive, negative, latent, **kw)
    finally:
        inputs.remove()
    return out, inputs.calls


def expected(model, calls, concepts, blocks, steps, temperature=1000.0, positions=None, timestep=None):
    dm = model.model.diffusion_model
    if positions is None:
        positions = POSITIONS[tuple((s.start, s.stop, s.length) for s in concepts.spans)]
    return ref.expected_maps(
        calls, lambda call: ref.masked_forward_scores(dm, call, concepts.embeddings, positions, blocks, timestep),
        blocks, steps, temperature)


def test_models_are_what_the_tests_claim(dev, klein):
    from concept_attention.adapters import adapter_for
    from concept_attention.adapters.flux import FluxAdapter
    for model in (dev, klein):
        assert type(model.model).__name__ == "Flux2"
        assert type(adapter_for(model)).__name__ == "Flux2Adapter"
        assert not FluxAdapter.supports(model.model)
    assert dev.model.diffusion_model.params.guidance_embed and not klein.model.diffusion_model.params.guidance_embed
    assert type(adapter_for(host.tiny_flux())).__name__ == "FluxAdapter"


@pytest.mark.parametrize("variant,cfg", [("dev", 1.0), ("dev", 3.0), ("klein", 3.0)])
def test_maps_equal_the_masked_forward_and_the_image_is_unchanged(dev, klein, variant, cfg):
    """Several blocks and steps, batch 2, one run read by two attachments in a row: raw means (softmax off, the
    strong check) and the tempered maps. The sampled image is bit-identical to the unpatched run."""
    from concept_attention import attach
    model, spans = (dev, DEV_SPANS) if variant == "dev" else (klein, KLEIN_SPANS)
    tokens = 12 if variant == "dev" else 512  # dev's encoding is left-padded by ComfyUI, Klein's comes padded
    concepts = make_concepts(spans)
    blocks, steps = [0, 2, 3], [0, 1, 2]
    raw, raw_recorder = attach(model, concepts, layers=blocks, steps=steps, softmax=False)
    both, recorder = attach(raw, concepts, layers=blocks, steps=steps)
    positive, negative = prompt(tokens, seed=5), prompt(tokens, seed=6)
    out, calls = sample_recording(model, both, positive, negative, tiny_flux2.latent(), cfg=cfg, steps=3)
    assert torch.equal(out, host.sample(model, positive, negative, tiny_flux2.latent(), cfg=cfg, steps=3))
    assert calls[0]["blocks"][0]["txt"].shape[1] == 512
    maps = raw_recorder.maps()
    assert maps.shape == (2, 3, 8, 10)
    torch.testing.assert_close(maps, expected(model, calls, concepts, blocks, steps, None), rtol=1e-4, atol=1e-4)
    assert maps.std(dim=(2, 3)).min() > 0.05, "the scores vary across tokens"
    assert not torch.allclose(maps[0], maps[1], atol=1e-2), "batch rows stay separate"
    torch.testing.assert_close(recorder.maps(), expected(model, calls, concepts, blocks, steps),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(recorder.maps().sum(1), torch.ones(2, 8, 10))


def test_default_blocks_steps_and_map_rule(dev, klein):
    from concept_attention import attach
    from concept_attention.adapters import adapter_for
    for n in range(1, 40):  # the authors' last 30% of the run; a run too short for it reads its last step
        published = list(range(int(n * 0.7), n - 1))
        assert adapter_for(dev).default_steps(n) == (published or [n - 1])
    assert adapter_for(dev).default_steps(28) == list(range(19, 27))
    assert adapter_for(dev).default_steps(1) == [0]  # From Image's single pass
    assert adapter_for(tiny_flux2.tiny_flux2(depth=8)).default_blocks() == [5, 6, 7]  # dev, Klein 9B
    assert adapter_for(tiny_flux2.tiny_flux2(depth=5)).default_blocks() == [2, 3, 4]  # Klein 4B

    concepts = make_concepts(KLEIN_SPANS)
    patched, recorder = attach(klein, concepts)
    assert recorder.blocks == [1, 2, 3]
    positive, negative = prompt(512, seed=5), prompt(512, seed=6)
    _, calls = sample_recording(klein, patched, positive, negative, tiny_flux2.latent(batch=1), cfg=2.0, steps=7)
    torch.testing.assert_close(recorder.maps(), expected(klein, calls, concepts, [1, 2, 3], {4, 5}),
                               rtol=1e-5, atol=1e-6)
    per_block_softmax = ref.expected_maps(  # Flux.1's rule gives other maps: the rule is the authors' Flux.2 one
        calls, lambda call: {b: torch.softmax(s, -1) for b, s in ref.masked_forward_scores(
            klein.model.diffusion_model, call, concepts.embeddings, [3, 4, 3], [1, 2, 3]).items()},
        [1, 2, 3], {4, 5}, None)
    assert not torch.allclose(recorder.maps(), per_block_softmax, atol=1e-2)

    every, every_recorder = attach(klein, concepts, steps="all")  # 'all' overrides the default: every step
    _, calls = sample_recording(klein, every, positive, negative, tiny_flux2.latent(batch=1), cfg=2.0, steps=7)
    torch.testing.assert_close(every_recorder.maps(), expected(klein, calls, concepts, [1, 2, 3], set(range(7))),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant,method", [("dev", "index"), ("klein", "index_timestep_zero")])
def test_reference_images_stay_out_of_the_maps(dev, klein, variant, method):
    """Flux.2 editing: reference latents are appended after the generated image. They are never concept keys nor
    map rows; with index_timestep_zero (Klein's edit method; ComfyUI runs it only without a guidance embedding)
    they get a zero timestep, and the concepts keep the real one."""
    from concept_attention import attach
    model, tokens = (dev, 12) if variant == "dev" else (klein, 512)
    concepts = make_concepts(DEV_SPANS)
    reference_latent = torch.randn(1, 128, 4, 6, generator=torch.Generator().manual_seed(9))
    extra = {"reference_latents": [reference_latent], "reference_latents_method": method}
    positive, negative = prompt(tokens, seed=5, **extra), prompt(tokens, seed=6, **extra)
    latent = tiny_flux2.latent(batch=1, h=6, w=8)
    patched, recorder = attach(model, concepts, layers=[1, 3], steps=[0, 1, 2], softmax=False)
    out, calls = sample_recording(model, patched, positive, negative, latent, cfg=2.0, steps=3)
    assert torch.equal(out, host.sample(model, positive, negative, latent, cfg=2.0, steps=3))
    block_input = calls[0]["blocks"][0]
    assert block_input["img"].shape[1] == 6 * 8 + 4 * 6  # generated, then reference tokens
    assert (block_input["modulation_dims_img"] is not None) == (method == "index_timestep_zero")
    maps = recorder.maps()
    assert maps.shape == (1, 3, 6, 8)
    torch.testing.assert_close(maps, expected(model, calls, concepts, [1, 3], {0, 1, 2}, None), rtol=1e-4, atol=1e-4)
    if method == "index_timestep_zero":
        zero = expected(model, calls, concepts, [1, 3], {0, 1, 2}, None, timestep=0.0)
        assert not torch.allclose(maps, zero, rtol=1e-2, atol=1e-2)


def test_concept_modulation_is_the_text_modulation_of_timestep_and_guidance(dev):
    """Flux.2 has no pooled text vector: the concepts take the text stream's modulation of the sampler's timestep
    and the guidance. A concept stream modulated with another timestep, or without the guidance, gives other maps."""
    from concept_attention import attach
    concepts = make_concepts(DEV_SPANS)
    patched, recorder = attach(dev, concepts, layers=[0, 2], steps=[1, 2], softmax=False)
    _, calls = sample_recording(dev, patched, prompt(12, seed=5, guidance=6.0), prompt(12, seed=6), tiny_flux2.latent(),
                                cfg=2.0, steps=3)
    maps = recorder.maps()
    torch.testing.assert_close(maps, expected(dev, calls, concepts, [0, 2], {1, 2}, None), rtol=1e-4, atol=1e-4)
    unguided = [{**call, "guidance": None} for call in calls]
    assert 6.0 in calls[0]["guidance"].tolist()
    for other in (expected(dev, calls, concepts, [0, 2], {1, 2}, None, timestep=0.5),
                  expected(dev, unguided, concepts, [0, 2], {1, 2}, None)):
        assert not torch.allclose(maps, other, rtol=1e-2, atol=1e-2)


def test_concepts_sit_at_their_text_position(dev, klein):
    """SPEC.md section 3: the text position the concept's (last) word token has when the concept alone is the
    prompt. Dev: 510 (the authors' position), Klein: the word's row; no spans: position 0."""
    from concept_attention import attach
    from concept_attention.adapters.flux2 import concept_positions
    assert concept_positions(make_concepts(DEV_SPANS), 512) == [510, 510, 510]
    assert concept_positions(make_concepts(KLEIN_SPANS), 512) == [3, 4, 3]
    assert concept_positions(make_concepts([(3, 4, 64)] * 3), 512) == [448 + 3] * 3  # a short encoding, left-padded
    assert concept_positions(make_concepts(None), 512) == [0, 0, 0]

    for model, spans, tokens in ((dev, DEV_SPANS, 12), (klein, KLEIN_SPANS, 512)):
        concepts = make_concepts(spans)
        patched, recorder = attach(model, concepts, layers=[1, 3], steps=[1, 2], softmax=False)
        _, calls = sample_recording(model, patched, prompt(tokens, seed=5), prompt(tokens, seed=6),
                                    tiny_flux2.latent(batch=1), cfg=2.0, steps=3)
        torch.testing.assert_close(recorder.maps(), expected(model, calls, concepts, [1, 3], {1, 2}, None),
                                   rtol=1e-4, atol=1e-4)
        for wrong in ([0, 0, 0], [s[0] for s in spans]):
            assert not torch.allclose(recorder.maps(), expected(model, calls, concepts, [1, 3], {1, 2}, None, wrong),
                                      rtol=1e-2, atol=1e-2)
    # the reference's explicit RoPE is the model's: the text tokens' rotations at ids 0..511
    dm = dev.model.diffusion_model
    ids = torch.zeros(1, 512, 4)
    ids[..., 3] = torch.arange(512.0)
    torch.testing.assert_close(ref.rope_matrices(ids, dm.params.axes_dim, dm.params.theta),
                               calls[0]["blocks"][0]["pe"][:1, :, :512], rtol=1e-5, atol=1e-5)


def test_from_image_stops_after_the_last_needed_block(dev):
    from concept_attention.from_image import maps_from_latent
    dm = dev.model.diffusion_model
    seen = []
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: seen.append(("double", i)))
               for i, b in enumerate(dm.double_blocks)]
    handles += [b.register_forward_pre_hook(lambda m, a, i=i: seen.append(("single", i)))
                for i, b in enumerate(dm.single_blocks)]
    try:
        result = maps_from_latent(dev, make_concepts(DEV_SPANS), tiny_flux2.latent(batch=1), prompt(12), layers=[1])
        assert seen == [("double", 0), ("double", 1)]
        seen.clear()
        maps_from_latent(dev, make_concepts(DEV_SPANS), tiny_flux2.latent(batch=1), prompt(12))  # default blocks, step
        assert seen == [("double", i) for i in range(4)]
    finally:
        for h in handles:
            h.remove()
    assert result.maps.shape == (1, 3, 8, 10)


def test_unsupported_model_error_names_flux2(dev):
    import comfy.supported_models
    from comfy.model_patcher import ModelPatcher
    from concept_attention import Concepts, attach
    from concept_attention.errors import ConceptAttentionError

    unet = dict(use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False,
                adm_in_channels=None, in_channels=4, model_channels=32, num_res_blocks=[1, 1],
                transformer_depth=[1, 1], channel_mult=[1, 2], transformer_depth_middle=1,
                use_linear_in_transformer=False, context_dim=32, num_head_channels=16,
                transformer_depth_output=[1, 1, 1, 1], use_temporal_attention=False, use_temporal_resblock=False)
    sdxl = ModelPatcher(comfy.supported_models.SDXL(unet).get_model({}), torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ConceptAttentionError, match=r"SDXL \(a UNet.*supported:.*Flux\.2 \(dev, Klein 4B, Klein 9B"):
        attach(sdxl, make_concepts(None))
    with pytest.raises(ConceptAttentionError, match=r"Block index 4 is out of range.*Flux\.2.*valid indices are 0-3"):
        attach(dev, make_concepts(None), layers=[4])
    with pytest.raises(ConceptAttentionError, match=f"width {TEXT_WIDTH}"):
        attach(dev, Concepts(["a"], torch.zeros(1, 7)))


@pytest.mark.parametrize("variant", ["dev", "klein"])
def test_concepts_encoded_by_the_tiny_encoders(variant):
    """encode_concepts with ComfyUI's own Flux.2 tokenizers and templates (tiny language models): the spans place
    dev's concepts at 510 (the word, then [/INST]) and Klein's at the word's row after "<|im_start|>user\\n" (3),
    here with the tiny Klein encoding padded to 64 tokens, so ComfyUI left-pads it by 448."""
    tiny_encoders = pytest.importorskip("tiny_encoders", reason="tests/tiny_encoders.py (branch encoders) absent")
    from concept_attention import attach, encode_concepts
    from concept_attention.adapters.flux2 import concept_positions
    clip = tiny_encoders.tiny_flux2_clip() if variant == "dev" else tiny_encoders.tiny_klein_clip()
    model = tiny_flux2.tiny_flux2(seed=3, klein=variant == "klein", context_in_dim=96)
    concepts = encode_concepts(clip, ["cat", "dog"])
    positions = [510, 510] if variant == "dev" else [448 + 3, 448 + 3]
    assert concept_positions(concepts, 512) == positions
    patched, recorder = attach(model, concepts, layers=[1, 3], steps=[0, 1], softmax=False)
    _, calls = sample_recording(model, patched, host.conditioning(clip, "a cat and a dog"), host.conditioning(clip, ""),
                                tiny_flux2.latent(batch=1), cfg=2.0, steps=2)
    torch.testing.assert_close(recorder.maps(), expected(model, calls, concepts, [1, 3], {0, 1}, None, positions),
                               rtol=1e-4, atol=1e-4)
