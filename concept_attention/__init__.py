"""ConceptAttention for ComfyUI: per-concept saliency maps from the joint attention of diffusion transformers
(the supported families: `concept_attention.adapters.supported_text()`).

    from concept_attention import Concepts, encode_concepts, attach
    concepts = encode_concepts(clip, ["cat", "sofa"])
    patched, recorder = attach(model_patcher, concepts)
    # ... any ComfyUI sampling with `patched` ...
    maps = recorder.maps()   # [B, C, h, w] (video: [B, C, T, h, w]) float32 on the token grid, softmax over C
"""

from .concepts import Concepts, encode_concepts, parse_concepts
from .errors import ConceptAttentionError
from .patch import attach
from .recorder import Recorder

__all__ = ["Concepts", "ConceptAttentionError", "Recorder", "attach", "encode_concepts", "parse_concepts"]
