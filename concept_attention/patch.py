"""Attaching the method to a ComfyUI model through its public hooks, on a clone.

- OUTER_SAMPLE wrapper: one sampling call is one run (begun, then finished or dropped).
- APPLY_MODEL wrapper: per model call, decides whether this call is recorded (schedule step, cond rows)
  and starts the concept stream (timestep embedding with a zero pooled vector, text input path).
- ("double_block", i) replace for blocks 0..last: runs the block itself (or the replace another pack put
  there) and, while its joint attention runs, reads the block's own image keys, values and attention
  output through an attention override. The image and prompt streams are never touched.
"""

from __future__ import annotations

import torch

from . import maps as maps_math
from .adapters import adapter_for
from .concepts import Concepts
from .errors import ConceptAttentionError
from .recorder import Recorder, Run
from .selection import check_blocks

class StopForward(Exception):
    """Raised after the last needed block when only the maps are wanted (from-image mode)."""


def attach(model_patcher, concepts: Concepts, layers=None, steps=None, space: str = "output",
           softmax: bool = True, stop_after_last_layer: bool = False):
    """Clone `model_patcher` and attach ConceptAttention. Returns (patched clone, Recorder).

    layers: 0-based joint/double block indices (None: the model's default set). steps: 0-based sampling
    step indices to record (None: all). space: "output" (the method), or the baselines "cross_attention"
    and "value"; softmax=False keeps raw scores (an ablation: maps then no longer sum to 1).
    stop_after_last_layer: end each model call after the last needed block (maps only, no image).
    """
    if not isinstance(concepts, Concepts):
        raise ConceptAttentionError("attach() needs a Concepts object; build one with encode_concepts(clip, names).")
    if space not in maps_math.SPACES:
        raise ConceptAttentionError(f"space must be one of {maps_math.SPACES}, got {space!r}.")
    adapter = adapter_for(model_patcher)
    model_name = f"{adapter.family} ({type(model_patcher.model).__name__})"
    blocks = adapter.default_blocks() if layers is None else check_blocks(list(layers), adapter.num_blocks, model_name)
    if not blocks:
        raise ConceptAttentionError(f"No blocks selected; valid indices for {model_name} are 0-{adapter.num_blocks - 1}.")
    if steps is not None:
        steps = sorted(set(int(s) for s in steps))
        if not steps or steps[0] < 0:
            raise ConceptAttentionError("Steps are 0-based sampling step indices (0, 1, ...), or None for all.")
    _check_embedding_width(adapter, concepts, model_name)

    latent_scale = model_patcher.model.latent_format.spacial_downscale_ratio
    recorder = Recorder(concepts, adapter.family, blocks, steps, space, softmax, latent_scale, adapter.patch_size)
    patched = model_patcher.clone()
    patched.add_wrapper_with_key(_wrappers().OUTER_SAMPLE, recorder.key,
                                 SampleWrapper(recorder, stop_after_last_layer))
    patched.add_wrapper_with_key(_wrappers().APPLY_MODEL, recorder.key, ApplyModelWrapper(recorder, adapter))
    existing = patched.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
    for index in range(blocks[-1] + 1):
        hook = BlockHook(recorder.key, index, existing.get(("double_block", index)))
        patched.set_model_patch_replace(hook, "dit", "double_block", index)
    return patched, recorder


def _wrappers():
    import comfy.patcher_extension

    return comfy.patcher_extension.WrappersMP


def _check_embedding_width(adapter, concepts: Concepts, model_name: str) -> None:
    expected = adapter.text_width
    got = concepts.embeddings.shape[-1]
    if got != expected:
        raise ConceptAttentionError(
            f"The concept embeddings are {got} wide but {model_name} takes text features of width {expected}. "
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
        self.recorder.finish_run(run, output)
        return output


class ApplyModelWrapper:
    """APPLY_MODEL: start the concept stream for model calls that are to be recorded."""

    def __init__(self, recorder: Recorder, adapter):
        self.recorder = recorder
        self.adapter = adapter

    def __deepcopy__(self, memo):
        return self

    def __call__(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kw):
        state = self._call_state(executor.class_obj, x, t, transformer_options, kw)
        if state is None:
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kw)
        transformer_options = {**transformer_options, self.recorder.key: state}
        out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kw)
        state.run.seen.update(state.seen_keys)
        return out

    def _call_state(self, base_model, x, t, options, kw):
        run = self.recorder.active
        if run is None:
            return None
        step = _step_index(options.get("sample_sigmas"), t)
        if step is None:
            return None
        run.steps_offered.add(step)
        if not self.recorder.wants_step(step):
            return None
        chunks, keys = _cond_chunks(options, x.shape[0], step, run)
        if not chunks:
            return None
        rows = CondRows(chunks)
        dtype = base_model.get_dtype_inference()
        timesteps = rows.take(base_model.model_sampling.timestep(t).float())
        guidance = kw.get("guidance")
        if torch.is_tensor(guidance):
            guidance = rows.take(guidance.to(device=x.device, dtype=dtype))
        grid = self.adapter.grid(x.shape[-2:])
        run.grid = grid
        return CallState(self.recorder, self.adapter, run, rows, keys, grid,
                         vec=self.adapter.concept_vec(timesteps, guidance, dtype),
                         c=self.adapter.embed(self.recorder.concepts.embeddings, rows.count, dtype, x.device))


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
    """The concept stream of one model call, carried from block to block."""

    def __init__(self, recorder: Recorder, adapter, run: Run, rows: CondRows, seen_keys, grid, vec, c):
        self.recorder, self.adapter, self.run = recorder, adapter, run
        self.rows, self.seen_keys, self.grid = rows, seen_keys, grid
        self.vec, self.c = vec, c
        self.record = set(recorder.blocks)
        self.last_block = recorder.blocks[-1]
        self.generated_tokens = grid[0] * grid[1]

    def run_block(self, index: int, args: dict, run_block):
        q_c, k_c, v_c, intermediates = self.adapter.concept_qkv(index, self.c, self.vec, args)
        options = args.get("transformer_options") or {}
        txt_len = args["txt"].shape[1]
        capture = JointAttentionCapture(
            options.get("optimized_attention_override"), txt_len + args["img"].shape[1],
            lambda q, k, v, out, heads, skip_reshape: self.on_joint_attention(
                index, txt_len, q_c, k_c, v_c, q, k, v, out, heads, skip_reshape))
        out = run_block({**args, "transformer_options": {**options, "optimized_attention_override": capture}})
        if capture.o_c is None:
            raise RuntimeError(
                f"Concept Attention could not see the joint attention of block {index}: another node pack "
                f"replaces this block without running its attention. Disable that pack's patch on this model.")
        self.c = self.adapter.concept_update(index, self.c, capture.o_c, intermediates)
        if index == self.last_block and self.run.stop_after_last_layer:
            raise StopForward
        return out

    def on_joint_attention(self, index, txt_len, q_c, k_c, v_c, q, k, v, out, heads, skip_reshape):
        """Runs inside the block's joint attention call, while its q, k, v and output are alive."""
        q, k, v = (_heads_first(t, heads, skip_reshape) for t in (q, k, v))
        take = self.rows.take
        o_c = maps_math.concept_attention(q_c, k_c, v_c, take(k[:, :, txt_len:]), take(v[:, :, txt_len:]))
        if index in self.record:
            image = slice(txt_len, txt_len + self.generated_tokens)  # reference-image tokens excluded
            space = self.recorder.space
            if space == "output":
                inputs = {"o_x": take(out[:, image]), "o_c": o_c}
            elif space == "cross_attention":
                inputs = {"q_x": take(q[:, :, image]), "k_c": k_c}
            else:
                inputs = {"v_x": take(v[:, :, image]), "v_c": v_c}
            scores = maps_math.saliency(space, softmax=self.recorder.softmax, **inputs)
            for chunk_scores in self.rows.split(scores):
                self.run.accumulator.add(chunk_scores)
        return o_c


def _heads_first(t: torch.Tensor, heads: int, skip_reshape: bool) -> torch.Tensor:
    """[B, H, L, Dh] view of an attention input given as [B, H, L, Dh], [B, L, H*Dh] or [B, L, H, Dh]."""
    if skip_reshape:
        return t
    return t.reshape(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)


class JointAttentionCapture:
    """optimized_attention_override that runs the attention unchanged (through any override already
    installed) and hands the first joint call (text + image length) to `on_call`."""

    def __init__(self, previous, joint_length: int, on_call):
        self.previous, self.joint_length, self.on_call = previous, joint_length, on_call
        self.o_c = None

    def __call__(self, func, *args, **kwargs):
        out = self.previous(func, *args, **kwargs) if self.previous is not None else func(*args, **kwargs)
        q = args[0]
        skip_reshape = kwargs.get("skip_reshape", False)
        length = q.shape[2] if skip_reshape else q.shape[1]
        if self.o_c is None and length == self.joint_length:
            heads = args[3] if len(args) > 3 else kwargs["heads"]
            self.o_c = self.on_call(q, args[1], args[2], out, heads, skip_reshape)
        return out


class BlockHook:
    """("double_block", i) replace. Runs the concept stream through block i when a call is recorded;
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
        state = (args.get("transformer_options") or {}).get(self.key)
        if state is None or self.index > state.last_block:
            return run_block(args)
        return state.run_block(self.index, args, run_block)
