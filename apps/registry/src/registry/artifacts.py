"""Artifact files: only safe formats, stored as parts through a Dapr binding, sha256-checked."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import AsyncIterator

from genai_platform.artifacts import ALLOWED_NAMES, PICKLED, is_storable
from genai_platform.contracts.registry import Artifact
from genai_platform.dapr import Sidecar
from registry.errors import NotSafetensors, UnsupportedArtifact


def check_filename(filename: str) -> str:
    """`filename` when it may be stored; UnsupportedArtifact for pickles and unknown files."""
    if filename.lower().endswith(PICKLED):
        raise UnsupportedArtifact(
            f"'{filename}' is a pickle-based format, which can run code when loaded; "
            "upload the weights as .safetensors."
        )
    if is_storable(filename):
        return filename
    raise UnsupportedArtifact(
        f"'{filename}' is not an accepted artifact: safetensors weights, or one of {', '.join(sorted(ALLOWED_NAMES))}."
    )


def check_safetensors_header(first_part: bytes) -> None:
    """A safetensors file opens with a little-endian u64 header length and a JSON header; NotSafetensors if not."""
    if len(first_part) < 10:
        raise NotSafetensors("The file is too short to be safetensors.")
    (length,) = struct.unpack("<Q", first_part[:8])
    if not 2 <= length <= 100 * 1024 * 1024 or first_part[8:9] != b"{":
        raise NotSafetensors("The file does not start with a safetensors header.")
    if length + 8 <= len(first_part):
        try:
            json.loads(first_part[8 : 8 + length])
        except ValueError as error:
            raise NotSafetensors("The safetensors header is not valid JSON.") from error


def part_name(model: str, version: int, filename: str, index: int) -> str:
    return f"{model}/{version}/{filename}.part{index:05d}"


class ArtifactStore:
    """Reads and writes artifacts as numbered parts through the blob binding.

    A part fits one sidecar request (Dapr's body limit), so a file of any size arrives as
    parts and is checked whole when the uploader says it is complete.
    """

    def __init__(self, sidecar: Sidecar, binding: str, part_size: int) -> None:
        self._sidecar = sidecar
        self._binding = binding
        self.part_size = part_size

    async def write_part(self, model: str, version: int, filename: str, index: int, data: bytes) -> str:
        """Store one part; returns its sha256."""
        if index == 0 and filename.endswith(".safetensors"):
            check_safetensors_header(data)
        await self._sidecar.invoke_binding(
            self._binding,
            "create",
            data=base64.b64encode(data).decode(),
            metadata={"fileName": part_name(model, version, filename, index)},
        )
        return hashlib.sha256(data).hexdigest()

    async def read(
        self, model: str, version: int, artifact: Artifact, *, verify_whole: bool = True
    ) -> AsyncIterator[bytes]:
        """Yield the file part by part; a part whose hash differs from the record is never sent."""
        whole = hashlib.sha256()
        for index, expected in enumerate(artifact.part_sha256):
            data = await self._sidecar.invoke_binding(
                self._binding, "get", metadata={"fileName": part_name(model, version, artifact.filename, index)}
            )
            if hashlib.sha256(data).hexdigest() != expected:
                raise CorruptArtifact(f"{model}/{version}/{artifact.filename} part {index} fails its sha256")
            whole.update(data)
            yield data
        if verify_whole and whole.hexdigest() != artifact.sha256:
            raise CorruptArtifact(f"{model}/{version}/{artifact.filename} fails its sha256")


class CorruptArtifact(Exception):
    """Stored bytes no longer match the sha256 recorded at upload."""
