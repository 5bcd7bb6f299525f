"""A sidecar whose name-resolution registration failed says so on its metrics port.

daprd 1.18 registers its app once, at start, in the SQLite name-resolution store; when that fails
(a CI run of session 5: "failed to register host: context deadline exceeded" while ten sidecars
started together) it logs INIT_COMPONENT_FAILURE and runs on, healthy by /v1.0/healthz, while no
other sidecar can ever invoke its app. The one signal outside its log is the counter
`dapr_runtime_component_init_fail_total{component="nameResolution"}` (pkg/runtime/runtime.go,
initNameResolution), which Prometheus scrapes and the `SidecarComponentInitFailed` alert
(monitoring/rules/platform.yml) watches. Here a real daprd gets a store it cannot open.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from harness import CONFIG, RESILIENCY_DIR, Daprd


def test_a_failed_registration_shows_in_daprd_metrics(log_dir: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    # A folder that does not exist: SQLite cannot create the file, so the store's init fails.
    config["spec"]["nameResolution"]["configuration"]["connectionString"] = str(tmp_path / "missing" / "nr.db")
    unopenable = tmp_path / "config.yaml"
    unopenable.write_text(yaml.safe_dump(config))
    sidecar = Daprd(
        app_id="nr-probe", resources=[RESILIENCY_DIR], log_dir=log_dir, extra_args=["--config", str(unopenable)]
    ).start()
    try:
        sidecar.wait_ready(30)  # healthy all the same: health does not see it
        metrics = httpx.get(f"http://127.0.0.1:{sidecar.metrics_port}/metrics", timeout=10).text
        failed = [
            line
            for line in metrics.splitlines()
            if line.startswith("dapr_runtime_component_init_fail_total{") and 'component="nameResolution"' in line
        ]
        assert len(failed) == 1, metrics
        assert 'app_id="nr-probe"' in failed[0] and 'componentName="sqlite"' in failed[0], failed
        assert float(failed[0].rsplit(" ", 1)[1]) == 1
        assert "INIT_COMPONENT_FAILURE" in sidecar.process.log_path.read_text()
    finally:
        sidecar.process.stop()
