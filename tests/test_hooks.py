"""The two ways of reaching a family's blocks (concept_attention/hooks.py) give the same maps.

Flux.1 is reached through its ("double_block", i) replace. Here the same family is also driven the way
single-stream families without a replace hook are: the concept step runs inside each joint attention call,
found through the model-wide attention override and `transformer_options["block_index"]`. Both must give
identical maps, leave the image bit-identical, stop early in from-image mode, and keep another pack's override
running.
"""

import pytest
import torch

import host

pytestmark = pytest.mark.host


def flux_via_attention_override():
    """Flux.1's math, hooked through the attention override instead of the block replace."""
    from concept_attention.adapters import ATTENTION
    from concept_attention.adapters.base import JointLayout
    from concept_attention.adapters.flux import FluxAdapter

    class FluxViaAttention(FluxAdapter):
        family = ""  # never registered: a test double of the hooking, not a family
        hook = ATTENTION

        def start(self, call, embeddings, concepts):
            stream = super().start(call, embeddings, concepts)
            stream.extra["text_tokens"] = call.kwargs["c_crossattn"].shape[1]
            ids = torch.zeros(stream.c.shape[0], stream.c.shape[1], len(self.dm.params.axes_dim), device=call.device)
            stream.extra["pe"] = self.dm.pe_embedder(ids)  # text ids are all zero on Flux.1
            return stream

        def layout(self, index, block_args, stream):
            t, n = stream.extra["text_tokens"], stream.extra["image_tokens"]
            return JointLayout(t + n, slice(t, t + n))

        def attention_block(self, options, length, stream, calls_seen):
            if options.get("block_type") != "double":  # single blocks attend over the same length
                return None
            return super().attention_block(options, length, stream, calls_seen)

        def concept_qkv(self, index, stream, block_args):
            return super().concept_qkv(index, stream, {"pe": stream.extra["pe"]})

    return FluxViaAttention


def use_attention_override(monkeypatch):
    """From here on, attach() (and so maps_from_latent) hooks Flux.1 through the attention override."""
    import concept_attention.patch as patch
    adapter_cls = flux_via_attention_override()
    monkeypatch.setattr(patch, "adapter_for", lambda model_patcher: adapter_cls(model_patcher.model))


@pytest.fixture()
def attach_via_attention(monkeypatch):
    import concept_attention.patch as patch
    use_attention_override(monkeypatch)
    return patch.attach


def latent(batch=2, seed=3):
    return torch.randn(batch, 16, 8, 10, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_attention_override_hook_equals_block_replace_hook(flux, clip, concepts, attach_via_attention, cfg):
    from concept_attention import attach
    pos, neg = host.conditioning(clip, "a cat on a sofa"), host.conditioning(clip, "a dog")
    by_replace, rec_replace = attach(flux, concepts, layers=[0, 2])
    by_override, rec_override = attach_via_attention(flux, concepts, layers=[0, 2])
    assert not by_override.model_options["transformer_options"].get("patches_replace")
    image = host.sample(flux, pos, neg, latent(), cfg=cfg)
    assert torch.equal(host.sample(by_replace, pos, neg, latent(), cfg=cfg), image)
    assert torch.equal(host.sample(by_override, pos, neg, latent(), cfg=cfg), image)
    torch.testing.assert_close(rec_override.maps(), rec_replace.maps(), rtol=1e-5, atol=1e-6)
    assert rec_replace.maps().std(dim=(2, 3)).min() > 1e-3, "the maps vary across tokens"


def test_attention_override_hook_stops_after_the_last_block(flux, clip, concepts, monkeypatch):
    from concept_attention.from_image import maps_from_latent

    cond = host.conditioning(clip, "a cat")
    by_replace = maps_from_latent(flux, concepts, latent(1), cond, layers=[1]).maps
    use_attention_override(monkeypatch)
    dm = flux.model.diffusion_model
    calls = []
    handles = [b.register_forward_pre_hook(lambda m, a, i=i: calls.append(("double", i)))
               for i, b in enumerate(dm.double_blocks)]
    handles += [b.register_forward_pre_hook(lambda m, a, i=i: calls.append(("single", i)))
                for i, b in enumerate(dm.single_blocks)]
    try:
        by_override = maps_from_latent(flux, concepts, latent(1), cond, layers=[1]).maps
    finally:
        for h in handles:
            h.remove()
    assert calls == [("double", 0), ("double", 1)]
    torch.testing.assert_close(by_override, by_replace, rtol=1e-5, atol=1e-6)


def test_another_packs_attention_override_keeps_running(flux, clip, concepts, attach_via_attention):
    seen = {"calls": 0}

    def foreign_override(func, *args, **kwargs):
        seen["calls"] += 1
        return func(*args, **kwargs)

    other = flux.clone()
    other.model_options["transformer_options"]["optimized_attention_override"] = foreign_override
    pos, neg = host.conditioning(clip, "a cat on a sofa"), host.conditioning(clip, "")
    image = host.sample(other, pos, neg, latent(1), cfg=2.0)
    without_us = seen["calls"]
    patched, recorder = attach_via_attention(other, concepts, layers=[1, 2])
    assert torch.equal(host.sample(patched, pos, neg, latent(1), cfg=2.0), image)
    assert seen["calls"] - without_us == without_us
    plain, plain_recorder = attach_via_attention(flux, concepts, layers=[1, 2])
    host.sample(plain, pos, neg, latent(1), cfg=2.0)
    torch.testing.assert_close(recorder.maps(), plain_recorder.maps())
