"""The serving metrics, per model version, on the app's /metrics.

Names follow OpenTelemetry's GenAI semantic conventions where one exists, in Prometheus form
(`gen_ai.server.time_to_first_token` -> `gen_ai_server_time_to_first_token_seconds`,
https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/), Prometheus naming otherwise.
"""

from prometheus_client import Counter, Gauge, Histogram

# Buckets from a few milliseconds (GPU, short prompt) to tens of seconds (CPU, full queue).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LABELS = ["model", "version"]

TIME_TO_FIRST_TOKEN = Histogram(
    "gen_ai_server_time_to_first_token_seconds",
    "From a request's arrival to its first generated token.",
    _LABELS,
    buckets=_LATENCY_BUCKETS,
)
TIME_PER_OUTPUT_TOKEN = Histogram(
    "gen_ai_server_time_per_output_token_seconds",
    "Mean time between a request's generated tokens after the first.",
    _LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28),
)
QUEUE_DEPTH = Gauge("inference_queue_depth", "Requests waiting for a batch slot.", _LABELS)
BATCH_SIZE = Gauge("inference_batch_size", "Sequences in the running batch.", _LABELS)
PROMPT_TOKENS = Counter("inference_prompt_tokens_total", "Prompt tokens prefilled.", _LABELS)
GENERATED_TOKENS = Counter("inference_generated_tokens_total", "Tokens generated.", _LABELS)
REQUESTS_FINISHED = Counter(
    "inference_requests_finished_total",
    "Generations ended, by reason (stop, length, cancelled, error).",
    [*_LABELS, "reason"],
)
REQUESTS_REJECTED = Counter(
    "inference_requests_rejected_total", "Requests refused because the queue was full.", _LABELS
)
