"""The handle a user keeps: it holds the settings of one attachment and the maps of its finished runs.

A run is one sampling call (CFGGuider.sample). Maps are accumulated online while it runs and become a
result only when it finishes normally; an interrupted run leaves nothing behind. Finished runs are found
again by a fingerprint of the latent they produced, so a masks node always shows the run that made its
LATENT, even when several samplers share one patched model.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import torch

from .concepts import Concepts
from .errors import ConceptAttentionError
from .maps import MapAccumulator, MapRule
from .masks import ConceptMaps
from .selection import ALL

KEPT_RUNS = 16


def latent_fingerprint(samples: torch.Tensor) -> str:
    """Identity of a latent that survives moving it between devices and to fp16 intermediates."""
    data = samples.detach().to("cpu", torch.float16).contiguous()
    digest = hashlib.blake2b(data.numpy().tobytes(), digest_size=16)
    digest.update(str(tuple(data.shape)).encode())
    return digest.hexdigest()


def first_of(samples):
    """A LATENT's samples, or the first latent of a nested LATENT (comfy.nested_tensor.NestedTensor)."""
    return samples.unbind()[0] if getattr(samples, "is_nested", False) else samples


class Run:
    """Accumulating state of one sampling call."""

    def __init__(self, rule: MapRule, stop_after_last_layer: bool = False):
        self.stop_after_last_layer = stop_after_last_layer
        self.accumulator = MapAccumulator(rule)
        self.grid: tuple[int, ...] | None = None
        self.seen: set = set()  # (step, cond uuid) already recorded, so re-evaluations count once
        self.steps_offered: set[int] = set()


@dataclass
class RunResult:
    maps: torch.Tensor | None  # [B, C, h, w] (video: [B, C, frames, h, w]) fp32 on the CPU, softmax over C
    problem: str = ""           # why there are no maps


class Recorder:
    """Concept-attention handle returned by `attach`.

    `maps()` gives the maps of the latest finished run; `maps_for(latent)` those of the run that produced
    `latent`. Survives deep copies (ModelPatcher.clone) as the same object.
    """

    def __init__(self, concepts: Concepts, adapter, blocks: list[int], steps: list[int] | None,
                 space: str, rule: MapRule):
        self.concepts = concepts
        self.adapter = adapter
        self.family = adapter.family
        self.blocks = blocks
        self.steps = steps if steps is None or steps == ALL else frozenset(steps)
        self.space = space
        self.rule = rule
        self.latent_scale = adapter.base_model.latent_format.spacial_downscale_ratio
        self.pixels_per_token = adapter.pixels_per_token()
        self.key = f"concept_attention_{uuid.uuid4().hex}"
        self.active: Run | None = None
        self._results: OrderedDict[str, RunResult] = OrderedDict()
        self._latest: RunResult | None = None

    def __deepcopy__(self, memo):
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return self.concepts.names

    # ---- results ----
    def maps(self) -> torch.Tensor:
        """Maps [B, C, h, w] (video: [B, C, T, h, w]; float32, token grid, softmax over C) of the latest
        finished run."""
        if self._latest is None:
            raise ConceptAttentionError(
                "No sampling run has finished with this Concept Attention model yet. Sample with the patched "
                "model first (any sampler node), then read the maps.")
        return self._checked(self._latest)

    def maps_for(self, samples: torch.Tensor) -> torch.Tensor:
        """Maps of the run that produced this latent (LATENT["samples"]; of a nested LATENT, e.g. LTX-2's video
        and audio, the first latent: the generated video)."""
        result = self._results.get(latent_fingerprint(first_of(samples)))
        if result is None:
            raise ConceptAttentionError(
                "No Concept Attention run produced this LATENT. Wire the LATENT output of the sampler that "
                "used this Concept Attention model (not a latent from elsewhere, a copy, or a batch slice), "
                "and make sure that sampler ran to the end; an interrupted run keeps no maps.")
        return self._checked(result)

    def concept_maps_for(self, samples: torch.Tensor) -> ConceptMaps:
        """The run that produced this latent, as ConceptMaps at the latent's image size."""
        samples = first_of(samples)
        return self.concept_maps(self.maps_for(samples), samples.shape[-2:])

    def concept_maps(self, maps: torch.Tensor, latent_hw) -> ConceptMaps:
        """Maps [B, C, h, w] (video: [B, C, T, h, w], with the family's frame layout) as ConceptMaps at the
        size of the latent's pixels. An image family's extra latent axis (Qwen-Image-Layered's layers) is folded
        into the batch, sample-major, as ComfyUI's LatentCutToBatch(dim="t") lays the layers out for decoding."""
        size = (latent_hw[0] * self.latent_scale, latent_hw[1] * self.latent_scale)
        frames = self.adapter.frame_layout() if maps.ndim == 5 else None
        if maps.ndim == 5 and frames is None:
            maps = maps.transpose(1, 2).flatten(0, 1)  # [B, C, T, h, w] -> [B*T, C, h, w]
        return ConceptMaps(self.names, maps, size, self.pixels_per_token, frames)

    @staticmethod
    def _checked(result: RunResult) -> torch.Tensor:
        if result.maps is None:
            raise ConceptAttentionError(result.problem)
        return result.maps

    # ---- run lifecycle (driven by the sampling wrapper) ----
    def begin_run(self, stop_after_last_layer: bool = False) -> Run:
        self.active = Run(self.rule, stop_after_last_layer)
        return self.active

    def abort_run(self, run: Run) -> None:
        if self.active is run:
            self.active = None

    def finish_run(self, run: Run, output: torch.Tensor | None) -> RunResult:
        self.abort_run(run)
        if run.accumulator.count == 0:
            result = RunResult(None, self._why_empty(run))
        elif output is not None and tuple(self.adapter.grid(output.shape)) != tuple(run.grid):
            result = RunResult(None, self._partial(run.grid, self.adapter.grid(output.shape)))
        else:
            result = RunResult(run.accumulator.mean(run.grid))
        self._latest = result
        if output is not None:
            self._results[latent_fingerprint(output)] = result
            while len(self._results) > KEPT_RUNS:
                self._results.popitem(last=False)
        return result

    def wants_step(self, step: int, total_steps: int) -> bool:
        """Whether schedule step `step` of a run of `total_steps` steps is recorded: the user's selection, else
        the family's default (every step for most families)."""
        steps = self.steps
        if steps is None:
            steps = self.adapter.default_steps(total_steps)
        return steps is None or steps == ALL or step in steps

    @staticmethod
    def _partial(recorded, whole) -> str:
        return (f"The model was called on only part of this latent (a token grid of {tuple(recorded)} where the "
                f"latent's is {tuple(whole)}), so its maps would not cover it. A context-window node (ComfyUI's "
                f"Context Windows) does this to long videos; Concept Attention maps a whole clip in one model call. "
                f"Sample without context windows to get masks.")

    def _why_empty(self, run: Run) -> str:
        if run.steps_offered and self.steps not in (None, ALL):
            return (f"The run recorded no maps: the selected steps {sorted(self.steps)} were not among the "
                    f"steps that ran ({min(run.steps_offered)}-{max(run.steps_offered)}). Widen the step "
                    f"selection or leave it at 'all'.")
        if run.steps_offered:
            return (f"The run recorded no maps: {self.family}'s default steps do not occur in a run of steps "
                    f"{min(run.steps_offered)}-{max(run.steps_offered)}. Select the steps to read (e.g. 'all').")
        return ("The run recorded no maps: the model was never called with the positive (cond) prompt on a "
                "step of the schedule. Check that the patched model is the one the sampler uses.")
