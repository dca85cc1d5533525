import pytest

from concept_attention.errors import ConceptAttentionError
from concept_attention.selection import check_blocks, parse_index_list


def test_parse_index_list():
    assert parse_index_list("15-18", "blocks") == [15, 16, 17, 18]
    assert parse_index_list(" 3, 1; 5-6 ,", "steps") == [1, 3, 5, 6]
    for default in ("", "all", "Default"):
        assert parse_index_list(default, "steps") is None
    with pytest.raises(ConceptAttentionError, match="Could not read blocks '18-15'"):
        parse_index_list("18-15", "blocks")
    with pytest.raises(ConceptAttentionError, match="Could not read steps"):
        parse_index_list("first", "steps")


def test_check_blocks_names_the_valid_range():
    assert check_blocks([2, 0, 2], 19, "Flux.1") == [0, 2]
    with pytest.raises(ConceptAttentionError, match="19 is out of range for Flux.1: .* valid indices are 0-18"):
        check_blocks([19], 19, "Flux.1")
