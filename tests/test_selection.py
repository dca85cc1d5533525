import pytest

from concept_attention.errors import ConceptAttentionError
from concept_attention.selection import check_blocks, parse_index_list


def test_parse_index_list():
    assert parse_index_list("15-18", "blocks") == [15, 16, 17, 18]
    assert parse_index_list(" 3, 1; 5-6 ,", "steps") == [1, 3, 5, 6]
    for default in ("", "all", "Default"):
        assert parse_index_list(default, "steps") is None
    assert parse_index_list("5 - 7", "blocks") == [5, 6, 7]


def test_a_reversed_range_is_named_as_such():
    with pytest.raises(ConceptAttentionError, match=r"^The blocks range '18-15' is reversed \(from 18 down to 15\): "
                                                     r"write the smaller index first, '15-18'\.$"):
        parse_index_list("0, 18-15", "blocks")
    with pytest.raises(ConceptAttentionError, match=r"^The steps range '5-2' is reversed .* '2-5'\. Steps count from "
                                                     r"0 .* '0-9' is its first ten steps"):
        parse_index_list("5-2", "steps")


def test_unreadable_selections_show_what_to_write():
    with pytest.raises(ConceptAttentionError, match=r"^Could not read steps 'first'\. Steps count from 0 .*'0-9'"):
        parse_index_list("first", "steps")
    with pytest.raises(ConceptAttentionError, match=r"^Could not read blocks '-3'\. Write 0-based indices .*'15-18'"):
        parse_index_list("-3", "blocks")


def test_check_blocks_names_the_valid_range():
    assert check_blocks([2, 0, 2], 19, "Flux.1") == [0, 2]
    with pytest.raises(ConceptAttentionError, match="19 is out of range for Flux.1: .* valid indices are 0-18"):
        check_blocks([19], 19, "Flux.1")
