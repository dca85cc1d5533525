"""Parsing of the block and step selections that users type ("15-18", "0, 2, 4-6", "all")."""

from __future__ import annotations

from .errors import ConceptAttentionError

ALL = ("", "all", "default")
STEPS_HOW = ("Steps count from 0 over the sampler's run: '0-9' is its first ten steps, '0, 2, 4' three of them, "
             "'all' every step.")
OTHERS_HOW = "Write 0-based indices and ranges such as '15-18' or '0, 2, 4-6', or leave it empty for the default."


def parse_index_list(text: str, what: str) -> list[int] | None:
    """Parse "3, 5-7" into [3, 5, 6, 7]; "", "all" or "default" give None (the default set)."""
    text = text.strip().lower()
    if text in ALL:
        return None
    how = STEPS_HOW if what == "steps" else OTHERS_HOW
    indices: list[int] = []
    for part in text.replace(";", ",").split(","):
        start, dash, end = part.partition("-")
        if not part.strip():
            continue
        try:
            first = int(start)
            last = int(end) if dash else first
        except ValueError:
            raise ConceptAttentionError(f"Could not read {what} {text!r}. {how}") from None
        if last < first:
            raise ConceptAttentionError(
                f"The {what} range '{part.strip()}' is reversed (from {first} down to {last}): write the smaller "
                f"index first, '{last}-{first}'." + (f" {how}" if what == "steps" else ""))
        indices.extend(range(first, last + 1))
    if not indices:
        return None
    return sorted(set(indices))


def check_blocks(blocks: list[int], num_blocks: int, model_name: str) -> list[int]:
    bad = [b for b in blocks if not 0 <= b < num_blocks]
    if bad:
        raise ConceptAttentionError(
            f"Block index {bad[0]} is out of range for {model_name}: it has {num_blocks} joint (double) "
            f"blocks, so valid indices are 0-{num_blocks - 1}.")
    return sorted(set(blocks))
