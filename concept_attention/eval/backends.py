"""What the segmentation protocol needs from a model: its ModelPatcher, image encoding, captions, concepts.

- TinyBackend: the shipped tiny pixel-space Flux (fixtures/), for the synthetic benchmark, tests and demo.
- ComfyBackend: any Flux.1 / SD3 / SD3.5 model loaded by ComfyUI's own loaders from the user's model
  folders (folder_paths), with its text encoder(s) and VAE.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _image_tensor(image: np.ndarray, size: int | None) -> torch.Tensor:
    """[1, H, W, 3] float in 0..1, resized (bicubic, clamped) to size x size when given."""
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, ..., :3]
    if size is not None and tuple(x.shape[1:3]) != (size, size):
        x = F.interpolate(x.movedim(-1, 1), size=(size, size), mode="bicubic", align_corners=False)
        x = x.clamp(0, 1).movedim(1, -1)
    return x


class TinyBackend:
    def __init__(self, tiny=None, resolution: int = 32):
        from .tiny_model import load

        self.tiny = tiny if tiny is not None else load()
        self.model_patcher = self.tiny.model_patcher
        self.resolution = resolution

    def encode(self, image: np.ndarray) -> torch.Tensor:
        from .tiny_model import encode_images

        return encode_images(_image_tensor(image, self.resolution))

    def conditioning(self, caption: str):
        return self.tiny.conditioning(caption)

    def concepts(self, names):
        return self.tiny.concepts(names)


class ComfyBackend:
    def __init__(self, model_patcher, clip, vae, resolution: int = 512, token_mode: str = "mean"):
        self.model_patcher, self.clip, self.vae = model_patcher, clip, vae
        self.resolution, self.token_mode = resolution, token_mode
        self._concepts: dict = {}

    def encode(self, image: np.ndarray) -> torch.Tensor:
        return self.vae.encode(_image_tensor(image, self.resolution))

    def conditioning(self, caption: str):
        return self.clip.encode_from_tokens_scheduled(self.clip.tokenize(caption))

    def concepts(self, names):
        from ..concepts import Concepts, encode_concepts

        missing = [n for n in names if n not in self._concepts]
        if missing:  # the background concepts repeat on every image: encode each name once
            encoded = encode_concepts(self.clip, missing, self.token_mode)
            self._concepts.update(zip(missing, encoded.embeddings))
        return Concepts(list(names), torch.stack([self._concepts[n] for n in names]))


CLIP_TYPES = ("flux", "sd3")


def load_comfy_backend(*, checkpoint=None, model=None, clip=(), clip_type="flux", vae=None,
                       weight_dtype="default", resolution=512, token_mode="mean") -> ComfyBackend:
    """Load with ComfyUI's loaders from its model folders (names as the loader nodes list them):
    a checkpoint (model + text encoders + VAE in one file), or a diffusion model from models/diffusion_models,
    one to three text encoders from models/text_encoders and a VAE from models/vae."""
    import comfy.sd
    import folder_paths
    import nodes

    _load_extra_model_paths(folder_paths)
    clip = [name.strip() for item in clip for name in item.split(",") if name.strip()]
    if checkpoint:
        patcher, clip_obj, vae_obj = nodes.CheckpointLoaderSimple().load_checkpoint(checkpoint)[:3]
    else:
        if not (model and clip and vae):
            raise SystemExit("Give --checkpoint, or all of --model, --clip and --vae.")
        patcher = nodes.UNETLoader().load_unet(model, weight_dtype)[0]
        paths = [folder_paths.get_full_path_or_raise("text_encoders", name) for name in clip]
        kind = getattr(comfy.sd.CLIPType, clip_type.upper())
        clip_obj = comfy.sd.load_clip(ckpt_paths=paths, clip_type=kind,
                                      embedding_directory=folder_paths.get_folder_paths("embeddings"))
        vae_obj = nodes.VAELoader().load_vae(vae)[0]
    if clip_obj is None or vae_obj is None:
        raise SystemExit("This checkpoint has no text encoder or no VAE; give --model, --clip and --vae instead.")
    return ComfyBackend(patcher, clip_obj, vae_obj, resolution, token_mode)


def _load_extra_model_paths(folder_paths) -> None:
    """ComfyUI's main.py reads extra_model_paths.yaml at start-up; a script has to do it itself."""
    import os

    yaml_path = os.path.join(folder_paths.base_path, "extra_model_paths.yaml")
    if os.path.isfile(yaml_path) and not getattr(folder_paths, "_concept_attention_extra_loaded", False):
        from utils.extra_config import load_extra_path_config

        load_extra_path_config(yaml_path)
        folder_paths._concept_attention_extra_loaded = True
