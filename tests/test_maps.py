"""Pure tensor math of the method (no ComfyUI needed)."""

import math

import pytest
import torch

from concept_attention import maps


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_concept_attention_is_one_directional_softmax_attention():
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


def test_output_space_saliency_is_a_softmax_over_concepts():
    o_x, o_c = rand(2, 6, 12, seed=1), rand(2, 3, 12, seed=2)
    s = maps.saliency("output", o_x=o_x, o_c=o_c)
    assert s.shape == (2, 6, 3) and s.dtype == torch.float32
    torch.testing.assert_close(s.sum(-1), torch.ones(2, 6))
    torch.testing.assert_close(s[1, 4], torch.softmax(o_c[1] @ o_x[1, 4], 0))
    raw = maps.saliency("output", o_x=o_x, o_c=o_c, softmax=False)
    torch.testing.assert_close(raw[0, 2, 1], o_x[0, 2] @ o_c[0, 1])


def test_baseline_spaces_sum_over_heads():
    q_x, k_c = rand(1, 2, 5, 4, seed=3), rand(1, 2, 3, 4, seed=4)
    s = maps.saliency("cross_attention", q_x=q_x, k_c=k_c)
    logits = (q_x[0, 0, 1] @ k_c[0, 0].T + q_x[0, 1, 1] @ k_c[0, 1].T) / 2
    torch.testing.assert_close(s[0, 1], torch.softmax(logits, 0))
    v = maps.saliency("value", v_x=q_x, v_c=k_c, softmax=False)
    torch.testing.assert_close(v[0, 1], logits * 2)
    with pytest.raises(ValueError):
        maps.saliency("keys", o_x=q_x, o_c=k_c)


def test_accumulator_is_a_running_mean_on_the_token_grid():
    acc = maps.MapAccumulator()
    a, b = torch.rand(2, 6, 3), torch.rand(2, 6, 3)
    acc.add(a)
    acc.add(b)
    out = acc.mean((2, 3))
    assert out.shape == (2, 3, 2, 3)
    torch.testing.assert_close(out[1, 2].flatten(), ((a + b) / 2)[1, :, 2])
    with pytest.raises(RuntimeError):
        acc.add(torch.rand(1, 6, 3))
