"""Client JSON is parsed so that what it holds can be stored and encoded again."""

import json

import pytest

from controlplane import untrusted_json


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '[-Infinity]', '{"a": 1e999}', "[-1e400]"])
def test_numbers_no_database_stores_are_refused(text):
    with pytest.raises(ValueError, match="not a JSON number|out of range"):
        untrusted_json.loads(text)


def test_ordinary_numbers_parse_as_json_does():
    text = '{"a": 1.5, "b": -2e10, "c": 7, "d": 1e308}'
    assert untrusted_json.loads(text) == json.loads(text)


def test_nesting_up_to_the_limit_parses_and_one_level_more_is_refused():
    deepest = "[" * untrusted_json.MAX_DEPTH + "1" + "]" * untrusted_json.MAX_DEPTH
    assert json.dumps(untrusted_json.loads(deepest)) == deepest
    with pytest.raises(ValueError, match="nested more than 64 levels"):
        untrusted_json.loads("[" + deepest + "]")


def test_nesting_past_what_the_decoder_follows_is_a_value_error_not_a_recursion_error():
    with pytest.raises(ValueError, match="nested more than"):
        untrusted_json.loads('{"a": ' * 100_000)


def test_nesting_counts_objects_and_lists_alike():
    mixed = '{"a": [' * 32 + "1" + "]}" * 32  # 64 levels, half of them objects
    assert untrusted_json.loads(mixed)
    with pytest.raises(ValueError, match="nested more than"):
        untrusted_json.loads("[" + mixed + "]")


@pytest.mark.parametrize("text", ['["\\ud800"]', '{"\\udfff": 1}', '{"a": {"b": "x\\ud83d"}}'])
def test_a_lone_surrogate_in_a_string_or_key_is_refused(text):
    # It parses, but no UTF-8 encoder takes it: PostgreSQL refuses it, and stored in SQLite it broke rendering.
    with pytest.raises(ValueError, match="lone surrogate"):
        untrusted_json.loads(text)


def test_a_surrogate_pair_is_one_character_and_parses():
    assert untrusted_json.loads('["\\ud83d\\ude80"]') == ["\U0001f680"]


def test_drf_json_fields_decode_with_the_same_refusals():
    from rest_framework import serializers

    field = serializers.JSONField(decoder=untrusted_json.Decoder, binary=True)
    with pytest.raises(serializers.ValidationError):
        field.to_internal_value('{"a": 1e999}')
    assert field.to_internal_value('{"a": 1.5}') == {"a": 1.5}


def test_a_nul_character_is_found_in_keys_and_strings_at_any_depth():
    assert untrusted_json.has_nul({"a": [{"b\x00": 1}]})
    assert untrusted_json.has_nul([[["x\x00y"]]])
    assert not untrusted_json.has_nul({"a": ["\\u0000 as text", 0, None]})
