"""Which artifact files the registry accepts, decided before any byte is stored."""

import json
import struct

import pytest

from genai_models.registry import RegistryVersion
from genai_platform.errors import DomainError
from registry.artifacts import check_filename, check_safetensors_header


@pytest.mark.parametrize(
    "name",
    [
        "model.safetensors",
        "model-00001-of-00002.safetensors",
        "tokenizer.json",
        "config.json",
        "adapter_config.json",
        "chat_template.jinja",
    ],
)
def test_weights_and_tokenizer_files_are_accepted(name: str) -> None:
    assert check_filename(name) == name


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.PTH", "weights.ckpt", "data.pkl"])
def test_pickle_formats_are_refused_and_say_why(name: str) -> None:
    with pytest.raises(DomainError) as refused:
        check_filename(name)
    assert refused.value.status == 415 and "pickle" in refused.value.detail


@pytest.mark.parametrize("name", ["../../etc/passwd", "run.sh", "model.safetensors/../x", ".safetensors"])
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(DomainError) as refused:
        check_filename(name)
    assert refused.value.status == 415


def test_a_safetensors_header_is_recognised_and_a_renamed_pickle_is_not() -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    check_safetensors_header(struct.pack("<Q", len(header)) + header + b"\0\0\0\0")
    for fake in (b"\x80\x04\x95" + b"\0" * 40, b"short", struct.pack("<Q", 10**12) + b"{}"):
        with pytest.raises(DomainError) as refused:
            check_safetensors_header(fake)
        assert refused.value.status == 422


def test_a_cached_registry_version_is_named_by_its_files_too() -> None:
    one = RegistryVersion(name="chat", version=1, files={"model.safetensors": "a" * 64, "config.json": "b" * 64})
    same = RegistryVersion(name="chat", version=1, files={"config.json": "b" * 64, "model.safetensors": "a" * 64})
    rebuilt = RegistryVersion(name="chat", version=1, files={"model.safetensors": "c" * 64, "config.json": "b" * 64})
    assert one.content_id == same.content_id
    assert one.content_id != rebuilt.content_id  # a registry started afresh reuses number 1
