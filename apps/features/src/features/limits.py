"""The served model's limits on an embeddings request's inputs: tokens per input, and its vocabulary
for token-id inputs. Plain checks raising `InputOverLimit` (400 naming the element and the limit)."""

from __future__ import annotations

from collections.abc import Sequence

from genai_platform.contracts.openai import EmbeddingsRequest, InputOverLimit, first_unknown_token


def refuse_unknown_token_ids(body: EmbeddingsRequest, vocab_size: int, model: str) -> None:
    """Raise `InputOverLimit` (limit `vocab_size`, its value `vocab_size`) naming the first token id
    of `body` outside the model's vocabulary, ids 0 to `vocab_size - 1` (`input[0][3] is 40000`);
    `vocab_size` is `Embedder.vocab_size`, genai_platform.contracts.openai's `vocabulary_size`.
    Text inputs pass: their ids come from the model's own tokenizer."""
    if not body.token_input:
        return
    for i, ids in enumerate(body.inputs):
        j = first_unknown_token(ids, vocab_size)  # type: ignore[arg-type]
        if j is not None:
            raise InputOverLimit(
                f"{body.element(i, j)} is token id {ids[j]}; {model}'s vocabulary holds ids 0 to {vocab_size - 1}.",
                limit="vocab_size",
                limit_value=vocab_size,
            )


def refuse_long_inputs(body: EmbeddingsRequest, counts: Sequence[int], max_tokens: int, model: str) -> None:
    """Raise `InputOverLimit` (limit `max_input_tokens`, its value `max_tokens`) naming the first
    input of `body` whose token count in `counts` (one per input, special tokens included) is over
    `max_tokens`: the model would read only its first `max_tokens` (OpenAI refuses such inputs too,
    never truncates)."""
    for i, count in enumerate(counts):
        if count > max_tokens:
            raise InputOverLimit(
                f"{body.element(i)} has {count} tokens; {model} reads at most {max_tokens} "
                "(its max_seq_length, special tokens included).",
                limit="max_input_tokens",
                limit_value=max_tokens,
            )
