"""Pure pieces of the gateway's chat pipeline."""

from gateway.chat import _json_mode, _last_user_text, _public_citations
from genai_platform.contracts.search import SearchHit
from genai_platform.sentences import may_end_sentence


def test_the_question_is_the_last_user_turn() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "What is the launch code word?"},
    ]
    assert _last_user_text(messages) == "What is the launch code word?"
    assert _last_user_text([{"role": "system", "content": "x"}]) == ""


def test_json_answers_are_passed_to_the_output_rail() -> None:
    schema = {"type": "object", "required": ["answer"]}
    assert _json_mode({"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}}) == {
        "json_schema": schema
    }
    assert _json_mode({"response_format": {"type": "json_object"}}) == {"json_mode": True}
    assert _json_mode({}) == {"json_mode": False}


def test_citations_leave_the_chunk_text_behind() -> None:
    hit = SearchHit(document_id="d1", title="Handbook", chunk_id="c7", index=0, score=0.81, text="long text")
    assert _public_citations([hit]) == [{"document_id": "d1", "title": "Handbook", "chunk_id": "c7", "score": 0.81}]


def test_a_guard_step_is_asked_for_only_when_a_sentence_may_have_ended() -> None:
    assert may_end_sentence("It is Paris. ", "Paris. ") and may_end_sentence("a line\n", "\n")
    assert not may_end_sentence("It is Par", "Par")
    # Guard needs the whitespace after the end mark; it usually arrives with the next token.
    assert not may_end_sentence("It is Paris.", "Paris.")
    assert may_end_sentence("It is Paris. It", " It")
    assert may_end_sentence('He said "go." Then', " Then")
    assert not may_end_sentence("It is Paris. It is", " is")  # that sentence was asked about already
    assert not may_end_sentence("Note: the", " the")  # guard does not end sentences at a colon
