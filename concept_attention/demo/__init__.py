"""A one-minute demo of ConceptAttention on the shipped tiny Flux: `python -m concept_attention.demo`."""
