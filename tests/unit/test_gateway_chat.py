"""Pure pieces of the gateway's chat pipeline."""

from gateway.chat import _last_user_text, _public_citations
from genai_platform.contracts.search import SearchHit


def test_the_question_is_the_last_user_turn() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "What is the launch code word?"},
    ]
    assert _last_user_text(messages) == "What is the launch code word?"
    assert _last_user_text([{"role": "system", "content": "x"}]) == ""


def test_citations_leave_the_chunk_text_behind() -> None:
    hit = SearchHit(document_id="d1", title="Handbook", chunk_id="c7", index=0, score=0.81, text="long text")
    assert _public_citations([hit]) == [{"document_id": "d1", "title": "Handbook", "chunk_id": "c7", "score": 0.81}]
