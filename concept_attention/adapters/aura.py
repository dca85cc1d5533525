"""AuraFlow (v0.1-v0.3): MMDiT double blocks with learned register tokens ahead of the prompt, no rotary
positions, modulation from the timestep alone.

The family's rules, and where each comes from (ComfyUI's comfy/ldm/aura/mmdit.py):
- Blocks: `double_layers` (`MMDiTBlock`: separate prompt and image weights, one joint attention), then
  single-stream `single_layers`. `MMDiT._forward` calls each double block through the ("double_block", i) patch
  replace with `txt`, `img` and `vec` (the timestep embedding); the concept step runs there.
- Text stream of a block (`MMDiTBlock.forward`): `modC(vec)` gives shift/scale/gate for the attention and the
  MLP; the tokens are layer-normed and modulated, projected by `attn.w1q/w1k/w1v`, their queries and keys
  normed per head (`q_norm1`/`k_norm1`); after the attention, `w1o`, the gated residual normed by `normC2`, then
  the gated MLP added to the block's input. The concept stream takes exactly these steps.
- Modulation: `vec` is `t_embedder(timestep)`; AuraFlow has no pooled text vector, so the prompt's own
  modulation is already the one the method asks for (timestep, zero pooled vector) and the concepts take it
  (at the recorded rows).
- Text input: the Pile-T5 features through `cond_seq_linear`; the model then puts its 8 learned
  `register_tokens` ahead of the prompt. They are the model's, not the prompt's words: concepts enter without
  them, and concept queries never see them (nor the prompt's zeroed padding tokens).
- Positions: the image gets a learned absolute position embedding at the input; text tokens get no position
  at all, so neither do the concepts.
- Joint attention: [registers + prompt; image].
- Default blocks: the authors published none; this pack's rule, the last quarter of the double blocks (block 3
  of AuraFlow's 4).
"""

from __future__ import annotations

from comfy.ldm.aura.mmdit import MMDiT, modulate

from .base import ConceptStream, JointLayout, ModelAdapter, expand_rows, last_quarter


class AuraFlowAdapter(ModelAdapter):
    family = "AuraFlow"
    models = "AuraFlow v0.1, v0.2, v0.3"
    default_blocks_text = "double block 3 (the last quarter)"
    defaults_published = False
    order = 110  # exact type, so only the listing order: after the families the pack began with (Flux.1, SD3)

    @classmethod
    def supports(cls, base_model) -> bool:
        return type(base_model.diffusion_model) is MMDiT

    def __init__(self, base_model):
        super().__init__(base_model)
        self.patch_size = self.dm.patch_size

    @property
    def num_blocks(self) -> int:
        return len(self.dm.double_layers)

    def default_blocks(self) -> list[int]:
        return last_quarter(self.num_blocks)

    @property
    def text_width(self) -> int:
        return self.dm.cond_seq_linear.in_features

    def start(self, call, embeddings, concepts):
        txt = expand_rows(embeddings.to(device=call.device, dtype=call.dtype), call.batch)
        grid = self.grid(call.x.shape)
        return ConceptStream(self.dm.cond_seq_linear(txt), None,
                             {"rows": call.rows, "image_tokens": grid[0] * grid[1]})

    def layout(self, index, block_args, stream):
        txt_len = block_args["txt"].shape[1]  # registers and prompt, then the image
        return JointLayout(txt_len + block_args["img"].shape[1],
                           slice(txt_len, txt_len + stream.extra["image_tokens"]))

    def concept_qkv(self, index, stream, block_args):
        block = self.dm.double_layers[index]
        attn = block.attn
        mods = block.modC(stream.extra["rows"].take(block_args["vec"])).chunk(6, dim=1)
        x = modulate(block.normC1(stream.c), mods[0], mods[1])
        batch, count = x.shape[:2]

        def heads(t):
            return t.view(batch, count, attn.n_heads, attn.head_dim)
        q, k, v = attn.q_norm1(heads(attn.w1q(x))), attn.k_norm1(heads(attn.w1k(x))), heads(attn.w1v(x))
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mods

    def concept_update(self, index, stream, o_c, mods):
        block = self.dm.double_layers[index]
        _, _, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods
        c = block.normC2(stream.c + gate_msa.unsqueeze(1) * block.attn.w1o(o_c))
        return stream.c + gate_mlp.unsqueeze(1) * block.mlpC(modulate(c, shift_mlp, scale_mlp))
