"""What the registry's catalog and artifact store refuse, as domain errors.

Each maps to problem+json once, through its `status` (genai_platform.errors); no store raises
an HTTP error itself. Callers of the registry see these as the shared client's `RegistryError`
family (genai_platform.registry_client).
"""

from __future__ import annotations

from genai_platform.errors import Conflict, DomainError, Invalid, NotFound


class ModelNotFound(NotFound):
    """No model of that name is registered (404)."""


class VersionNotFound(NotFound):
    """The model has no such version, alias or ready version, or the version no such file (404)."""


class AliasNotFound(NotFound):
    """The model has no alias of that name (404)."""


class ModelExists(Conflict):
    """A model of that name is registered already (409)."""


class VersionFrozen(Conflict):
    """The version is ready, so its files are immutable (409)."""


class VersionNotReady(Conflict):
    """An alias can point only at a ready version (409)."""


class InvalidAlias(Invalid):
    """The alias name breaks the naming rule (422)."""


class UploadRefused(Invalid):
    """An upload or its completion cannot be accepted: a missing part, a wrong size, a bad index (422)."""


class ChecksumMismatch(Invalid):
    """The uploaded parts do not hash to the sha256 the uploader gave (422)."""

    title = "Checksum mismatch"


class WeightsMissing(Invalid):
    """A version cannot be ready without a .safetensors file (422)."""


class PartTooLarge(DomainError):
    """A part is larger than the registry's part size (413); `part_size` says the limit in bytes."""

    status = 413


class UnsupportedArtifact(DomainError):
    """A file name that is neither safetensors nor an allowed config or tokenizer file (415)."""

    status = 415
    title = "Unsupported artifact format"


class NotSafetensors(Invalid):
    """A .safetensors upload that does not open with a safetensors header (422)."""

    title = "Not a safetensors file"
