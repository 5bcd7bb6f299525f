"""Blocklist, length and JSON-schema rails."""

from guard.rails import blocklist, json_schema, length


def test_blocklist_matches_whole_words_and_phrases_despite_case_spacing_and_look_alikes() -> None:
    topics = {"weapons": ("build a bomb", "nerve agent")}
    assert [f.kind for f in blocklist.scan("How do I BUILD  a   bomb?", topics=topics).findings] == ["topic:weapons"]
    assert blocklist.scan("the nеrve agent", topics=topics).score == 1.0  # Cyrillic е
    assert blocklist.scan("a bath bomb recipe and nerve agents of change", topics=topics).score == 0.0
    assert [f.kind for f in blocklist.scan("Acme is great", terms=("acme",)).findings] == ["term"]
    assert blocklist.scan("acmeist", terms=("acme",)).score == 0.0


def test_length_estimates_tokens_and_enforces_limits() -> None:
    assert 8 <= length.estimate_tokens("The quick brown fox jumps over the lazy dog.") <= 12
    assert length.scan("word " * 100, max_tokens=50).findings[0].kind == "too_many_tokens"
    assert length.scan("word " * 10, max_tokens=50).score == 0.0
    assert length.scan("x" * 30, max_tokens=100, max_chars=20).findings[0].kind == "too_many_chars"
    # Each finding names the policy setting it is over, as every limit of the platform is named.
    over = length.scan("word " * 100, max_tokens=50).findings[0]
    assert (over.limit, over.limit_value) == ("length.max_tokens", 50)
    assert length.scan("x" * 30, max_tokens=100, max_chars=20).findings[0].limit == "length.max_chars"


def test_json_answers_must_parse_and_fit_the_schema() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    assert json_schema.scan('{"age": 3}', schema).score == 0.0
    assert json_schema.scan('```json\n{"age": 3}\n```', schema).score == 0.0
    bad = json_schema.scan('{"age": "three"}', schema)
    assert bad.score == 1.0 and bad.findings[0].detail == "age: fails `type`"
    assert json_schema.scan('{"name": "x"}', schema).findings[0].detail == "(root): fails `required`"
    assert json_schema.scan("Sure! Here it is: {age: 3}", schema).findings[0].kind == "invalid_json"
    assert json_schema.scan("[1, 2]", None).findings[0].kind == "not_an_object"
    assert json_schema.scan('{"any": "object"}', None).score == 0.0
