"""One trace spans the apps and their sidecars in Zipkin (W3C trace context through Dapr)."""

import secrets as random
import subprocess

import httpx

from harness import ROOT, wait_until

ZIPKIN = "http://127.0.0.1:9411"


def test_a_gateway_call_is_one_trace_across_apps_and_sidecars(start_app, default_broker, secrets) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "infra.sh"), "start", "zipkin"], check=True, capture_output=True)
    traced = {"ZIPKIN_ENDPOINT": f"{ZIPKIN}/api/v2/spans"}
    monitor = start_app("monitor", env=traced)
    gateway = start_app("gateway", env=traced)
    monitor.wait_ready()
    trace_id = random.token_hex(16)
    api_key = secrets["gateway-api-keys"].split(",")[0]
    response = httpx.get(
        f"{gateway.app.url}/v1/system/health",
        headers={"Authorization": f"Bearer {api_key}", "traceparent": f"00-{trace_id}-{random.token_hex(8)}-01"},
        timeout=30,
    )
    assert response.status_code == 200

    def spans() -> list[dict] | None:
        found = httpx.get(f"{ZIPKIN}/api/v2/trace/{trace_id}", timeout=5)
        if found.status_code != 200:
            return None
        names = {(s["localEndpoint"]["serviceName"], s.get("kind")) for s in found.json()}
        # The gateway app's server span, both sidecars, and the monitor app's server span.
        wanted = {("gateway", "SERVER"), ("monitor", "SERVER"), ("gateway", "CLIENT")}
        return found.json() if wanted <= names else None

    found = wait_until(
        spans, what="the trace in Zipkin", timeout=60, interval=0.5, watch=monitor.processes + gateway.processes
    )
    assert {span["traceId"] for span in found} == {trace_id}
    names = " ".join(span.get("name", "") for span in found)
    assert "/v1/system/health" in names  # from the gateway app's own instrumentation
    assert "readyz" in names  # the invocation the sidecars carried to the monitor
