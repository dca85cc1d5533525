"""How the concept step reaches a model's joint blocks, kept apart from the families' math.

Every family's concept step runs inside its block's joint attention call, through ComfyUI's
`optimized_attention_override` (chained to any override already installed), while the block's own q, k, v and
attention output are alive: nothing of the image is recomputed, and the attention runs unchanged.

- BLOCK_REPLACE families: a ("double_block", i) patch replace (chained to a replace another pack put there)
  installs the override around block i only; the replace also hands the block's arguments to the family.
  Cross-attention families (Wan, LTX) run their concept step in the block's text cross-attention call instead.
- ATTENTION families (models that call their blocks without a replace hook): the override is installed for the
  whole model call, and an attention call is matched to its block by `transformer_options["block_index"]` or
  by call order (the family decides, `ModelAdapter.attention_block`).
"""

from __future__ import annotations

import torch


class StopForward(Exception):
    """Raised after the last needed block when only the maps are wanted (from-image mode)."""


class AttentionCall:
    """One optimized_attention call, restricted to the recorded rows, as [B, H, L, Dh] q/k/v and [B, L, HD]
    output. Views are taken lazily: a family reads only what its concept step needs."""

    def __init__(self, args: tuple, kwargs: dict, out: torch.Tensor, rows):
        self._q, self._k, self._v = args[0], args[1], args[2]
        self.heads = args[3] if len(args) > 3 else kwargs["heads"]
        self.skip_reshape = kwargs.get("skip_reshape", False)
        self.skip_output_reshape = kwargs.get("skip_output_reshape", False)
        self.scale = kwargs.get("scale")
        self.options = kwargs.get("transformer_options") or {}
        self._out = out
        self._rows = rows
        self._cache = {}

    @staticmethod
    def length_of(args: tuple, kwargs: dict, which: int = 0) -> int:
        """The sequence length of the call's queries (which=0) or keys (which=1)."""
        t = args[which]
        return t.shape[2] if kwargs.get("skip_reshape", False) else t.shape[1]

    def _heads_first(self, t: torch.Tensor) -> torch.Tensor:
        """[B, H, L, Dh] from an input given as [B, H, L, Dh] (skip_reshape) or [B, L, H*Dh] (keys and values
        may have fewer heads than the queries: grouped-query attention)."""
        if self.skip_reshape:
            return t
        head_dim = self._q.shape[-1] // self.heads
        return t.reshape(t.shape[0], t.shape[1], -1, head_dim).transpose(1, 2)

    def _view(self, name: str, make):
        if name not in self._cache:
            self._cache[name] = self._rows.take(make())
        return self._cache[name]

    @property
    def q(self) -> torch.Tensor:
        return self._view("q", lambda: self._heads_first(self._q))

    @property
    def k(self) -> torch.Tensor:
        return self._view("k", lambda: self._expand_gqa(self._heads_first(self._k)))

    @property
    def v(self) -> torch.Tensor:
        return self._view("v", lambda: self._expand_gqa(self._heads_first(self._v)))

    @property
    def out(self) -> torch.Tensor:
        def make():
            out = self._out
            if self.skip_output_reshape:  # [B, H, L, Dh]
                out = out.transpose(1, 2).flatten(2)
            return out
        return self._view("out", make)

    def _expand_gqa(self, t: torch.Tensor) -> torch.Tensor:
        """Keys/values with fewer heads than the queries (grouped-query attention) repeated to match them."""
        if t.shape[1] != self.heads:
            t = t.repeat_interleave(self.heads // t.shape[1], dim=1)
        return t


def call_attention(previous, func, args, kwargs):
    """Run the attention as it would run without us: through the override installed before ours, if any."""
    return previous(func, *args, **kwargs) if previous is not None else func(*args, **kwargs)


class BlockAttentionCapture:
    """Override installed around one block (BLOCK_REPLACE): the concept step runs on the block's call that
    `layout` names (adapters.base.JointLayout): the first call of the joint length, or for a cross-attention
    family the text cross-attention, told by its key length after `layout.skip` earlier calls of those lengths."""

    def __init__(self, previous, state, index: int, block_args: dict, layout):
        self.previous, self.state, self.index = previous, state, index
        self.block_args, self.layout = block_args, layout
        self.to_skip = layout.skip
        self.seen = False

    def __call__(self, func, *args, **kwargs):
        out = call_attention(self.previous, func, args, kwargs)
        if not self.seen and self._matches(args, kwargs):
            if self.to_skip:
                self.to_skip -= 1
                return out
            self.seen = True
            self.state.on_attention(self.index, AttentionCall(args, kwargs, out, self.state.rows), self.block_args)
        return out

    def _matches(self, args, kwargs) -> bool:
        if AttentionCall.length_of(args, kwargs) != self.layout.length:
            return False
        return self.layout.keys is None or AttentionCall.length_of(args, kwargs, 1) == self.layout.keys


class BlockReplaceHook:
    """("double_block", i) replace. Runs block i with the capture override when the model call is recorded;
    otherwise (and for the image itself) defers to the original block or the replace it chained to."""

    def __init__(self, key: str, index: int, previous=None):
        self.key, self.index, self.previous = key, index, previous

    def __deepcopy__(self, memo):
        return self

    def __call__(self, args, extra):
        if self.previous is not None:
            def run_block(a):
                return self.previous(a, extra)
        else:
            run_block = extra["original_block"]
        options = args.get("transformer_options") or {}
        state = options.get(self.key)
        if state is None or self.index > state.last_block:
            return run_block(args)
        layout = state.adapter.layout(self.index, args, state.stream)
        capture = BlockAttentionCapture(options.get("optimized_attention_override"), state, self.index, args,
                                        layout)
        out = run_block({**args, "transformer_options": {**options, "optimized_attention_override": capture}})
        if not capture.seen:
            raise RuntimeError(
                f"Concept Attention could not see the attention of block {self.index}: another node pack "
                f"replaces this block without running its attention. Disable that pack's patch on this model.")
        state.block_done(self.index)
        return out


class ModelAttentionHook:
    """Override installed for a whole model call (ATTENTION families): each joint attention call is matched to
    its block and runs that block's concept step."""

    def __init__(self, previous, state):
        self.previous, self.state = previous, state
        self.joint_calls = 0
        self.done: set[int] = set()

    def __call__(self, func, *args, **kwargs):
        out = call_attention(self.previous, func, args, kwargs)
        state = self.state
        options = kwargs.get("transformer_options") or {}
        index = state.adapter.attention_block(options, AttentionCall.length_of(args, kwargs), state.stream,
                                              self.joint_calls)
        if index is None:
            return out
        self.joint_calls += 1
        if index <= state.last_block and index not in self.done:
            self.done.add(index)
            state.on_attention(index, AttentionCall(args, kwargs, out, state.rows), None)
            state.block_done(index)
        return out
