"""Pure tensor math of the method (no ComfyUI needed)."""

import math

import pytest
import torch

from concept_attention import maps


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("chunk", [4096, 2])  # image keys/values read in one chunk, or in chunks of 2 tokens
def test_concept_attention_is_one_directional_softmax_attention(monkeypatch, chunk):
    monkeypatch.setattr(maps, "CHUNK_TOKENS", chunk)
    B, H, C, N, D = 2, 3, 4, 5, 8
    q_c, k_c, v_c = rand(B, H, C, D, seed=1), rand(B, H, C, D, seed=2), rand(B, H, C, D, seed=3)
    k_x, v_x = rand(B, H, N, D, seed=4), rand(B, H, N, D, seed=5)
    keys, values = torch.cat([k_x, k_c], 2), torch.cat([v_x, v_c], 2)
    expected = torch.empty(B, C, H * D)
    for b in range(B):
        for h in range(H):
            for c in range(C):
                w = torch.softmax(keys[b, h] @ q_c[b, h, c] / math.sqrt(D), dim=0)
                expected[b, c, h * D:(h + 1) * D] = w @ values[b, h]
    torch.testing.assert_close(maps.concept_attention(q_c, k_c, v_c, k_x, v_x), expected)


@pytest.mark.parametrize("chunk", [4096, 4])
def test_output_space_scores_are_output_products(monkeypatch, chunk):
    monkeypatch.setattr(maps, "CHUNK_TOKENS", chunk)
    o_x, o_c = rand(2, 6, 12, seed=1), rand(2, 3, 12, seed=2)
    s = maps.scores("output", o_x=o_x, o_c=o_c)
    assert s.shape == (2, 6, 3) and s.dtype == torch.float32
    torch.testing.assert_close(s[0, 2, 1], o_x[0, 2] @ o_c[0, 1])
    torch.testing.assert_close(s[1, 5, 2], o_x[1, 5] @ o_c[1, 2])


@pytest.mark.parametrize("chunk", [4096, 2])
def test_baseline_spaces_sum_over_heads(monkeypatch, chunk):
    monkeypatch.setattr(maps, "CHUNK_TOKENS", chunk)
    q_x, k_c = rand(1, 2, 5, 4, seed=3), rand(1, 2, 3, 4, seed=4)
    s = maps.scores("cross_attention", q_x=q_x, k_c=k_c)
    logits = (q_x[0, 0, 1] @ k_c[0, 0].T + q_x[0, 1, 1] @ k_c[0, 1].T) / 2
    torch.testing.assert_close(s[0, 1], logits)
    torch.testing.assert_close(s[0, 4], (q_x[0, 0, 4] @ k_c[0, 0].T + q_x[0, 1, 4] @ k_c[0, 1].T) / 2)
    v = maps.scores("value", v_x=q_x, v_c=k_c)
    torch.testing.assert_close(v[0, 1], logits * 2)
    with pytest.raises(ValueError):
        maps.scores("keys", o_x=q_x, o_c=k_c)


def test_paper_rule_softmax_per_contribution_then_mean():
    a, b = rand(1, 4, 3, seed=5) * 5, rand(1, 4, 3, seed=6) * 5
    acc = maps.MapAccumulator(maps.MapRule())
    acc.add(a)
    acc.add(b)
    expected = (torch.softmax(a, -1) + torch.softmax(b, -1)) / 2
    torch.testing.assert_close(acc.mean((2, 2)), expected.transpose(1, 2).reshape(1, 3, 2, 2))
    torch.testing.assert_close(acc.mean((2, 2)).sum(1), torch.ones(1, 2, 2))


def test_flux2_rule_mean_of_raw_scores_then_one_softmax_at_a_temperature():
    a, b = rand(1, 4, 3, seed=7) * 3000, rand(1, 4, 3, seed=8) * 3000
    acc = maps.MapAccumulator(maps.MapRule(temperature=1000.0))
    acc.add(a)
    acc.add(b)
    expected = torch.softmax((a + b) / 2 / 1000.0, -1)
    torch.testing.assert_close(acc.mean((4, 1)), expected.transpose(1, 2).reshape(1, 3, 4, 1))
    per_block = maps.MapAccumulator(maps.MapRule())
    per_block.add(a)
    per_block.add(b)
    assert not torch.allclose(per_block.mean((4, 1)), acc.mean((4, 1)), atol=1e-3)


def test_no_softmax_ablation_keeps_the_mean_of_raw_scores():
    a, b = rand(1, 4, 3, seed=9), rand(1, 4, 3, seed=10)
    for rule in (maps.MapRule(softmax=False), maps.MapRule(softmax=False, temperature=1000.0)):
        acc = maps.MapAccumulator(rule)
        acc.add(a)
        acc.add(b)
        torch.testing.assert_close(acc.mean((4, 1)), ((a + b) / 2).transpose(1, 2).reshape(1, 3, 4, 1))


def test_accumulator_is_a_running_mean_on_the_token_grid():
    acc = maps.MapAccumulator(maps.MapRule(softmax=False))
    a, b = torch.rand(2, 6, 3), torch.rand(2, 6, 3)
    acc.add(a)
    acc.add(b)
    out = acc.mean((2, 3))
    assert out.shape == (2, 3, 2, 3)
    torch.testing.assert_close(out[1, 2].flatten(), ((a + b) / 2)[1, :, 2])
    with pytest.raises(RuntimeError):
        acc.add(torch.rand(1, 6, 3))


def test_video_maps_keep_the_frame_axis():
    acc = maps.MapAccumulator(maps.MapRule(softmax=False))
    scores = torch.arange(2 * 12 * 3, dtype=torch.float32).reshape(2, 12, 3)
    acc.add(scores)
    out = acc.mean((3, 2, 2))  # frames, h, w
    assert out.shape == (2, 3, 3, 2, 2)
    torch.testing.assert_close(out[1, 2, 2, 1, 0], scores[1, 2 * 4 + 1 * 2 + 0, 2])
