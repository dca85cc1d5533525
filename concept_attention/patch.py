"""Attaching the method to a ComfyUI model through its public hooks, on a clone.

- OUTER_SAMPLE wrapper: one sampling call is one run (begun, then finished or dropped).
- APPLY_MODEL wrapper: per model call, decides whether this call is recorded (schedule step, cond rows) and
  starts the concept stream (the family's text input path and concept modulation).
- The family's hook (concept_attention/hooks.py) runs each needed block's concept step inside that block's
  joint attention call. The image and prompt streams are never touched.
"""

from __future__ import annotations

import torch

from . import maps as maps_math
from .adapters import ATTENTION, adapter_for
from .adapters.base import ModelCall, packed_shapes
from .concepts import Concepts
from .errors import ConceptAttentionError
from .hooks import BlockReplaceHook, ModelAttentionHook, StopForward
from .recorder import Recorder, Run
from .selection import ALL, check_blocks

__all__ = ["attach", "StopForward"]


def attach(model_patcher, concepts: Concepts, layers=None, steps=None, space: str = maps_math.AUTO_SPACE,
           softmax: bool = True, stop_after_last_layer: bool = False):
    """Clone `model_patcher` and attach ConceptAttention. Returns (patched clone, Recorder).

    layers: 0-based joint block indices (None: the model's default set, "all": every joint block). steps: 0-based
    sampling step indices to record (None: the family's default, every step for most; "all": every step).
    space: "output" (the method), or the baselines "cross_attention" and "value"; "auto" (the default) is
    "output" where the model has it and "cross_attention" for the cross-attention-only families (Wan, LTX),
    which offer that baseline alone. softmax=False keeps raw scores (an ablation: maps then no
    longer sum to 1). stop_after_last_layer: end each model call after the last needed block (maps only).
    """
    if not isinstance(concepts, Concepts):
        raise ConceptAttentionError("attach() needs a Concepts object; build one with encode_concepts(clip, names).")
    adapter = adapter_for(model_patcher)
    model_name = f"{adapter.family} ({type(model_patcher.model).__name__})"
    if space == maps_math.AUTO_SPACE:
        space = adapter.spaces[0]
    if space not in maps_math.SPACES:
        raise ConceptAttentionError(f"space must be one of {(maps_math.AUTO_SPACE, *maps_math.SPACES)}, got "
                                    f"{space!r}.")
    if space not in adapter.spaces:
        raise ConceptAttentionError(adapter.unsupported_space_message(space))
    if layers is None:
        blocks = adapter.default_blocks()
    elif layers == ALL:
        blocks = list(range(adapter.num_blocks))
    else:
        blocks = check_blocks(list(layers), adapter.num_blocks, model_name)
    if not blocks:
        raise ConceptAttentionError(f"No blocks selected; valid indices for {model_name} are 0-{adapter.num_blocks - 1}.")
    if steps is not None and steps != ALL:
        steps = sorted(set(int(s) for s in steps))
        if not steps or steps[0] < 0:
            raise ConceptAttentionError("Steps are 0-based sampling step indices (0, 1, ...), 'all', or None for the "
                                        "model's default.")
    _check_embedding_width(adapter, concepts, model_name)

    rule = maps_math.MapRule(softmax, adapter.softmax_temperature)
    recorder = Recorder(concepts, adapter, blocks, steps, space, rule)
    patched = model_patcher.clone()
    wrappers = _wrappers()
    patched.add_wrapper_with_key(wrappers.OUTER_SAMPLE, recorder.key, SampleWrapper(recorder, stop_after_last_layer))
    patched.add_wrapper_with_key(wrappers.APPLY_MODEL, recorder.key, ApplyModelWrapper(recorder, adapter))
    if adapter.hook != ATTENTION:
        existing = patched.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
        for index in range(blocks[-1] + 1):
            hook = BlockReplaceHook(recorder.key, index, existing.get((adapter.block_key, index)))
            patched.set_model_patch_replace(hook, "dit", adapter.block_key, index)
    return patched, recorder


def _wrappers():
    import comfy.patcher_extension

    return comfy.patcher_extension.WrappersMP


def _check_embedding_width(adapter, concepts: Concepts, model_name: str) -> None:
    expected = adapter.text_widths
    got = concepts.embeddings.shape[-1]
    if got not in expected:
        raise ConceptAttentionError(
            f"The concept embeddings are {got} wide but {model_name} takes text features of width "
            f"{' or '.join(map(str, expected))}. "
            f"Encode the concepts with the text encoder that belongs to this model (the CLIP input).")


class SampleWrapper:
    """OUTER_SAMPLE: a sampling call is a run; only a run that ends normally leaves maps."""

    def __init__(self, recorder: Recorder, stop_after_last_layer: bool):
        self.recorder = recorder
        self.stop_after_last_layer = stop_after_last_layer

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, noise, latent_image, *args, **kwargs):
        run = self.recorder.begin_run(self.stop_after_last_layer)
        try:
            output = executor(noise, latent_image, *args, **kwargs)
        except StopForward:
            self.recorder.finish_run(run, None)
            return latent_image
        except BaseException:
            self.recorder.abort_run(run)
            raise
        self.recorder.finish_run(run, first_latent(output, kwargs))
        return output


def first_latent(output: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """The generated latent of a sampling output: the output itself, or the first latent where the sampler
    packed several (a nested LATENT: the sampler hands back NestedTensor(unpack_latents(output)), whose first
    tensor is what the masks node will be given)."""
    shapes = packed_shapes(kwargs)
    if shapes is None:
        return output
    import comfy.utils
    return comfy.utils.unpack_latents(output, shapes)[0]


class ApplyModelWrapper:
    """APPLY_MODEL: start the concept stream for model calls that are to be recorded."""

    def __init__(self, recorder: Recorder, adapter):
        self.recorder = recorder
        self.adapter = adapter

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kw):
        state = self._call_state(executor.class_obj, x, t, c_crossattn, transformer_options, kw)
        if state is None:
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kw)
        transformer_options = {**transformer_options, self.recorder.key: state}
        if self.adapter.hook == ATTENTION:
            previous = transformer_options.get("optimized_attention_override")
            transformer_options["optimized_attention_override"] = ModelAttentionHook(previous, state)
        out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kw)
        state.run.seen.update(state.seen_keys)
        return out

    def _call_state(self, base_model, x, t, c_crossattn, options, kw):
        run = self.recorder.active
        if run is None:
            return None
        sample_sigmas = options.get("sample_sigmas")
        step = _step_index(sample_sigmas, t)
        if step is None:
            return None
        run.steps_offered.add(step)
        if not self.recorder.wants_step(step, len(sample_sigmas) - 1):
            return None
        chunks, keys = _cond_chunks(options, x.shape[0], step, run)
        if not chunks:
            return None
        rows = CondRows(chunks)
        call = ModelCall(base_model, x, t, {**kw, "c_crossattn": c_crossattn}, rows,
                         base_model.get_dtype_inference(), x.device)
        stream = self.adapter.start(call, self.recorder.concepts.embeddings, self.recorder.concepts)
        run.grid = self.adapter.grid(call.latent_shape)
        return CallState(self.recorder, self.adapter, run, rows, keys, stream)


def _step_index(sample_sigmas, t):
    """Index of the current sigma in the run's schedule, or None for an off-schedule call."""
    if sample_sigmas is None:
        return None
    hits = torch.isclose(sample_sigmas.to(t.device, torch.float32), t[:1].float(), rtol=1e-4).nonzero()
    return int(hits[0, 0]) if len(hits) else None


def _cond_chunks(options, batch, step, run: Run):
    """Row slices of this call that carry a positive prompt not yet recorded at this step."""
    cond_or_uncond = options.get("cond_or_uncond") or [0]
    uuids = options.get("uuids") or [None] * len(cond_or_uncond)
    per = batch // len(cond_or_uncond)
    chunks, keys = [], []
    for j, (kind, uid) in enumerate(zip(cond_or_uncond, uuids)):
        key = (step, uid)
        if kind == 0 and key not in run.seen and key not in keys:
            chunks.append(slice(j * per, (j + 1) * per))
            keys.append(key)
    return chunks, keys


class CondRows:
    """The rows of a model call that carry positive prompts (one chunk of the latent batch each). Only
    they get a concept stream; with a single chunk (the usual case) taking them is a view, not a copy."""

    def __init__(self, chunks: list[slice]):
        self.chunks = chunks
        self.per_chunk = chunks[0].stop - chunks[0].start
        self.count = self.per_chunk * len(chunks)

    def take(self, t: torch.Tensor) -> torch.Tensor:
        if len(self.chunks) == 1:
            return t[self.chunks[0]]
        return torch.cat([t[rows] for rows in self.chunks])

    def split(self, t: torch.Tensor):
        """Per chunk pieces of a tensor over the positive rows."""
        return t.split(self.per_chunk)


class CallState:
    """The concept stream of one recorded model call, carried from block to block."""

    def __init__(self, recorder: Recorder, adapter, run: Run, rows: CondRows, seen_keys, stream):
        self.recorder, self.adapter, self.run = recorder, adapter, run
        self.rows, self.seen_keys, self.stream = rows, seen_keys, stream
        self.record = set(recorder.blocks)
        self.last_block = recorder.blocks[-1]
        stream.last_block = self.last_block

    def on_attention(self, index: int, attn, block_args) -> None:
        """Block `index`'s concept step, inside its joint attention call."""
        space = self.recorder.space if index in self.record else None
        logits = self.adapter.concept_step(index, attn, self.stream, block_args, space)
        if logits is not None:
            for chunk in self.rows.split(logits):
                self.run.accumulator.add(chunk)

    def block_done(self, index: int) -> None:
        if index == self.last_block and self.run.stop_after_last_layer:
            raise StopForward
