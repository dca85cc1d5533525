"""ConceptAttention for ComfyUI: per-concept saliency maps from Flux.1 and SD3/SD3.5 joint attention.

    from concept_attention import Concepts, encode_concepts, attach
    concepts = encode_concepts(clip, ["cat", "sofa"])
    patched, recorder = attach(model_patcher, concepts, layers=[15, 16, 17, 18])
    # ... any ComfyUI sampling with `patched` ...
    maps = recorder.maps()   # [B, C, h, w] float32 on the token grid, softmax over C
"""

from .concepts import Concepts, encode_concepts, parse_concepts
from .errors import ConceptAttentionError
from .patch import attach
from .recorder import Recorder

__all__ = ["Concepts", "ConceptAttentionError", "Recorder", "attach", "encode_concepts", "parse_concepts"]
