"""Chat examples as training tensors: the model's chat template, loss only on assistant turns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Positions the loss ignores (PyTorch's cross-entropy default ignore_index).
IGNORE = -100

Messages = Sequence[dict[str, str]]
# render(messages, add_generation_prompt) -> text in the model's chat template
Render = Callable[[Messages, bool], str]
# encode(text) -> (token ids, (start, end) character offsets of each token)
Encode = Callable[[str], tuple[list[int], list[tuple[int, int]]]]


@dataclass(frozen=True)
class TokenizedExample:
    """One conversation as token ids, and its labels: the ids of the assistant replies, IGNORE elsewhere."""

    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        """The tokens the loss is computed on (the assistant replies')."""
        return sum(1 for label in self.labels if label != IGNORE)


def assistant_spans(messages: Messages, render: Render) -> tuple[str, list[tuple[int, int]]]:
    """The whole conversation as text, and the character span of each assistant reply in it.

    A reply spans from the end of the prompt that asks for it (the template with the generation
    prompt) to the end of the conversation up to and including it, so the end-of-turn marker is
    learnt too: that is what makes the model stop.
    """
    text = render(messages, False)
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(messages[:index], True)
        upto = render(messages[: index + 1], False)
        if not text.startswith(upto) or not upto.startswith(prompt):
            # A template that rewrites earlier turns (some drop old reasoning) has no stable prefix.
            raise ValueError("the chat template does not render conversations prefix by prefix")
        spans.append((len(prompt), len(upto)))
    return text, spans


def tokenize_example(messages: Messages, render: Render, encode: Encode, max_length: int) -> TokenizedExample | None:
    """Token ids and labels (IGNORE outside assistant replies), cut to `max_length` tokens.

    None when nothing learnable is left after the cut (the reply starts past the limit).
    """
    text, spans = assistant_spans(messages, render)
    ids, offsets = encode(text)
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORE
        for token, (begin, _) in zip(ids, offsets, strict=True)
    ]
    ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE for label in labels):
        return None
    return TokenizedExample(ids, labels)


def pad_batch(
    examples: Sequence[TokenizedExample], pad_id: int
) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """Right-pad a batch: input ids, attention mask, labels (padding never counts in the loss)."""
    width = max(len(e.input_ids) for e in examples)
    ids, mask, labels = [], [], []
    for example in examples:
        pad = width - len(example.input_ids)
        ids.append(example.input_ids + [pad_id] * pad)
        mask.append([1] * len(example.input_ids) + [0] * pad)
        labels.append(example.labels + [IGNORE] * pad)
    return ids, mask, labels


def hf_render(tokenizer) -> Render:
    """`render` for a Hugging Face tokenizer with a chat template."""

    def render(messages: Messages, add_generation_prompt: bool) -> str:
        if not messages:
            return ""
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )

    return render


def hf_encode(tokenizer) -> Encode:
    """`encode` for a fast Hugging Face tokenizer: the template carries the special tokens already."""

    def encode(text: str) -> tuple[list[int], list[tuple[int, int]]]:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(encoded["input_ids"]), [tuple(pair) for pair in encoded["offset_mapping"]]

    return encode
