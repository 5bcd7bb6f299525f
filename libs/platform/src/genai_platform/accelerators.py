"""The floating-point type a model runs in, chosen by what the processor computes natively.

For the apps that run models (inference's generator, features' embedder). torch is imported
when the CPU is asked about: only those apps have it installed.
"""

from __future__ import annotations

from enum import StrEnum


class Dtype(StrEnum):
    """A model's floating-point type while serving (a setting: `INFERENCE_DTYPE`, `FEATURES_DTYPE`)."""

    AUTO = "auto"  # bfloat16 on CUDA and on CPUs with AVX-512 BF16 or AMX, else float32
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"


def resolved_dtype(dtype: Dtype, device_type: str) -> str:
    """The torch dtype's name (`"bfloat16"`, `"float32"`, ...) for a setting on a device type
    (`"cpu"`, `"cuda"`): `auto` is bfloat16 on CUDA and on CPUs with native bfloat16 dot products
    (`cpu_has_bf16`), float32 on other CPUs.

    Half the bytes per weight is nearly twice the speed where a pass reads every weight once or
    is bound by multiply-adds: measured 1.8x a decode step and a prefill of the chat model on an
    AVX512-BF16 Xeon (bench/README.md, "Inference") and 1.5-1.8x the embedding model on an
    AVX512-BF16 AMD EPYC (apps/features/README.md, "Speed"). Without native bfloat16 dot products the
    conversions cost more than the bytes saved, so float32 stays.
    """
    if dtype is not Dtype.AUTO:
        return dtype.value
    return "bfloat16" if device_type == "cuda" or cpu_has_bf16() else "float32"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 dot products natively (AVX512_BF16 or AMX)."""
    import torch  # noqa: PLC0415 - only the apps that run models have torch

    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
