"""ConceptAttention on Flux.2 equals the paper authors' own Flux.2 implementation (helblazer811/ConceptAttention,
`concept_attention/flux2/`) on identical tiny weights and inputs.

Their code is loaded at run time from a clone of their repository (tests/authors_flux2.py), never stored here.
Where no clone is found the test is skipped with one line saying so. It is deliberately not a `host` test: under
CI a skipped host test fails, and the authors' repository is a reference outside this project's environment.
"""

import pytest
import torch

import authors_flux2
import host
import tiny_flux2
from tiny_flux2 import prompt

NAMES = ["cat", "sofa", "window"]


def setup_module():
    why_not = authors_flux2.available()
    if why_not:
        pytest.skip(f"authors' Flux.2 code unavailable: {why_not}", allow_module_level=True)
    if host.find_comfyui() is None:
        pytest.skip("ComfyUI not found: the comparison runs ComfyUI's Flux.2", allow_module_level=True)


def test_maps_equal_the_authors_flux2_code(tmp_path):
    """The authors' ModifiedFlux2, denoising loop and heatmap aggregation (helblazer811/ConceptAttention,
    concept_attention/flux2/), on the same tiny weights, inputs and schedule as a ComfyUI run with the pack's
    defaults: blocks 5-7 of 8, the last 30% of the steps, one softmax at temperature 1000, concepts at text id
    510. Their sampler has no CFG, so the ComfyUI run uses cfg 1."""
    from concept_attention import Concepts, attach
    from concept_attention.concepts import TokenSpan
    authors = authors_flux2.load(tmp_path)
    model = tiny_flux2.tiny_flux2(seed=2, depth=8)
    dm = model.model.diffusion_model
    theirs = authors_flux2.model_from_comfy(dm, authors)
    embeddings = torch.randn(len(NAMES), tiny_flux2.TEXT_WIDTH, generator=torch.Generator().manual_seed(11))
    # as dev's encoder gives a one-token word: the word, then [/INST]; left-padded to 512 -> text id 510
    concepts = Concepts(NAMES, embeddings, [TokenSpan(40, 41, 42)] * len(NAMES))
    raw, raw_recorder = attach(model, concepts, softmax=False)
    patched, recorder = attach(raw, concepts)
    assert recorder.blocks == [5, 6, 7]
    first_call = {}

    def keep_first_call(module, args, kwargs):
        first_call.setdefault("x", args[0].clone())
        first_call.setdefault("context", kwargs["context"].clone())
        first_call.setdefault("sigmas", kwargs["transformer_options"]["sample_sigmas"].clone())

    handle = dm.register_forward_pre_hook(keep_first_call, with_kwargs=True)
    steps, (h, w) = 7, (6, 8)
    try:
        out = host.sample(patched, prompt(12, seed=5, guidance=4.0), prompt(12, seed=6),
                          tiny_flux2.latent(batch=1, h=h, w=w), cfg=1.0, steps=steps)
    finally:
        handle.remove()

    x = first_call["x"].flatten(2).transpose(1, 2)  # [1, h*w, 128], row-major tokens, as their prc_img
    x_ids = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(h * 1.0), torch.arange(w * 1.0), torch.zeros(1),
                                       indexing="ij"), -1).reshape(1, -1, 4)
    context = first_call["context"]
    ctx_ids = torch.zeros(1, context.shape[1], 4)
    ctx_ids[..., 3] = torch.arange(context.shape[1] * 1.0)
    concept_ids = torch.zeros(1, len(NAMES), 4)
    concept_ids[..., 3] = 510.0  # their pipeline: row and text id 510
    holder = type("Pipeline", (), {})()
    holder.model = theirs
    with torch.no_grad():
        img, dicts = authors.denoise(holder, x, x_ids, context, ctx_ids, concepts.embeddings[None].float(),
                                     concept_ids, first_call["sigmas"].tolist(), 4.0)
    their_steps = list(range(int(steps * 0.7), steps - 1))  # their generate_image's default timesteps
    their_maps = authors.heatmaps(dicts, len(NAMES), w * 16, h * 16, [5, 6, 7], their_steps,
                                  softmax_temperature=1000.0)
    their_raw = authors.heatmaps(dicts, len(NAMES), w * 16, h * 16, [5, 6, 7], their_steps, softmax=False)

    torch.testing.assert_close(img.transpose(1, 2).reshape(1, 128, h, w), out, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(raw_recorder.maps()[0], their_raw.float(), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(recorder.maps()[0], their_maps.float(), rtol=1e-5, atol=1e-6)
    assert their_raw.std(dim=(1, 2)).min() > 0.05
