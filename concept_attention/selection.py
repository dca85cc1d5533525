"""Parsing of the block and step selections that users type ("15-18", "0, 2, 4-6", "all")."""

from __future__ import annotations

from .errors import ConceptAttentionError

ALL = ("", "all", "default")


def parse_index_list(text: str, what: str) -> list[int] | None:
    """Parse "3, 5-7" into [3, 5, 6, 7]; "", "all" or "default" give None (the default set)."""
    text = text.strip().lower()
    if text in ALL:
        return None
    indices: list[int] = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                start, end = (int(p) for p in part.split("-", 1))
                if end < start:
                    raise ValueError
                indices.extend(range(start, end + 1))
            else:
                indices.append(int(part))
        except ValueError:
            raise ConceptAttentionError(
                f"Could not read {what} {text!r}: write 0-based indices and ranges such as '15-18' or "
                f"'0, 2, 4-6', or leave it empty for the default.") from None
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
