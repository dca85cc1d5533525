"""What the cross-attention-only families (Wan, LTX) share: the `cross_attention` baseline and nothing else.

In these models the prompt's tokens are never updated: each block's image tokens read the text through a
cross-attention, and the text keys and values come from the same text features in every block. There is no
joint attention for concept tokens to take part in, so ConceptAttention proper (the `output` space) does not
exist (SPEC.md section 3, "Cross-attention-only models"). What the pack offers there is the paper's raw
cross-attention baseline, per frame:

    S_l = softmax over concepts of  sum over heads h of  q_x,h k_c,h^T / sqrt(Dh)

at block l, where q_x are the image rows of the queries of the block's TEXT cross-attention call (as that call
receives them: the image tokens after the model's own norm, modulation, query projection and query norm), and
k_c the concept keys: each concept's text-encoder embedding through the model's text input path (run on that
concept alone), then the same cross-attention's key projection and key norm (and whatever the model does to
text features before that projection in this block). The map is the mean of S_l over the chosen blocks and
steps. Nothing is updated from block to block (the text never is), so a block the maps do not read costs
nothing, and the image's own attention runs untouched: the video is bit-identical.

The concept step runs inside the block's text cross-attention call (hooks.BlockAttentionCapture), told apart
from the block's self-attention and any image cross-attention by its key length (JointLayout.keys, .skip).
"""

from __future__ import annotations

import torch

from .. import maps as maps_math
from .base import ConceptStream, ModelAdapter, last_quarter

SPACE = "cross_attention"


class CrossAttentionAdapter(ModelAdapter):
    """A cross-attention-only family: subclasses give the concept keys of a block (`concept_keys`), where the
    image sits among the text cross-attention's queries and that call's key length (`layout`)."""

    spaces = (SPACE,)

    def unsupported_space_message(self, space: str) -> str:
        return (f"{self.family} is a cross-attention-only model: its prompt tokens are never updated by the image, "
                f"so ConceptAttention (the {space!r} space) does not exist for it. It offers the "
                f"'{SPACE}' baseline only (softmax over concepts of the image queries x concept keys of its text "
                f"cross-attention, per frame). Set the Concept Attention node's 'space' to 'auto' or '{SPACE}'.")

    def default_blocks(self) -> list[int]:
        return last_quarter(self.num_blocks)

    def concept_keys(self, index: int, stream: ConceptStream, block_args: dict) -> torch.Tensor:
        """The concepts' keys [B, H, C, Dh] in block `index`'s text cross-attention (`block_args`: the block's
        patch-replace arguments, all rows)."""
        raise NotImplementedError

    def concept_step(self, index, attn, stream, block_args, space):
        if space is None:  # a block the maps do not read: the concepts carry nothing from block to block
            return None
        image = self.layout(index, block_args, stream).image
        return maps_math.scores(space, q_x=attn.q[:, :, image], k_c=self.concept_keys(index, stream, block_args))


def heads_first(t: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, H*Dh] as [B, H, L, Dh]."""
    return t.unflatten(-1, (heads, -1)).transpose(1, 2)
