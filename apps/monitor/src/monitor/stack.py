"""The monitoring stack's run-time configuration, generated from the repo's own files.

Scrape targets come from the run file (dapr.yaml): each app's `appPort` serves `/metrics`, each
sidecar's `metricsPort` serves daprd's, so a new app in the run file is scraped with no second
list. Alert rules are copied from monitoring/rules/, with `for:` shortened when a test asks
(`MONITORING_ALERT_FOR`). `python -m monitor.stack` writes it all under .data/ for
scripts/infra.sh, which starts Prometheus and Alertmanager on it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Prometheus job names; the alert rules and the overview select on them.
APP_JOB = "app"
DAPRD_JOB = "daprd"


@dataclass(frozen=True)
class ScrapeTarget:
    app_id: str
    job: str  # APP_JOB or DAPRD_JOB
    address: str  # host:port


class StackSettings(BaseSettings):
    """Intervals of the stack (Prometheus duration strings, e.g. `15s`, `1m`).

    Production-like defaults; the end-to-end tests shorten them so an alert fires in seconds
    instead of sleeping through minutes.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    scrape_interval: str = Field("15s", validation_alias="MONITORING_SCRAPE_INTERVAL")
    scrape_timeout: str = Field("10s", validation_alias="MONITORING_SCRAPE_TIMEOUT")
    evaluation_interval: str = Field("15s", validation_alias="MONITORING_EVALUATION_INTERVAL")
    # When set, every alert rule's `for:` becomes this (rules keep their own otherwise).
    alert_for: str | None = Field(None, validation_alias="MONITORING_ALERT_FOR")
    group_wait: str = Field("10s", validation_alias="MONITORING_GROUP_WAIT")
    group_interval: str = Field("1m", validation_alias="MONITORING_GROUP_INTERVAL")
    repeat_interval: str = Field("4h", validation_alias="MONITORING_REPEAT_INTERVAL")
    alertmanager_address: str = Field("127.0.0.1:9093", validation_alias="ALERTMANAGER_ADDRESS")
    # The monitor app's own listener: Alertmanager 0.25 cannot send Dapr's `dapr-api-token` header,
    # so it posts on loopback with a bearer token the route checks (monitor/alerts.py).
    webhook_url: str = Field("http://127.0.0.1:8108/alerts/webhook", validation_alias="MONITORING_WEBHOOK_URL")


def scrape_targets(run_file: Path) -> list[ScrapeTarget]:
    """Every app's `/metrics` (`appPort`) and every sidecar's metrics port, from a Dapr run file.

    Raises ValueError when an entry has no `appID`.
    """
    document = yaml.safe_load(run_file.read_text())
    targets: list[ScrapeTarget] = []
    for app in document.get("apps") or []:
        app_id = app.get("appID")
        if not app_id:
            raise ValueError(f"{run_file}: an app entry has no appID")
        if app.get("appPort"):
            targets.append(ScrapeTarget(app_id, APP_JOB, f"127.0.0.1:{app['appPort']}"))
        if app.get("metricsPort"):
            targets.append(ScrapeTarget(app_id, DAPRD_JOB, f"127.0.0.1:{app['metricsPort']}"))
    return targets


def file_sd(targets: list[ScrapeTarget], job: str) -> list[dict[str, Any]]:
    """Prometheus `file_sd_configs` content for one job: one group per target, labelled by app."""
    return [{"targets": [t.address], "labels": {"app_id": t.app_id}} for t in targets if t.job == job]


def prometheus_config(settings: StackSettings, out: Path) -> dict[str, Any]:
    """prometheus.yml: two jobs fed by the generated target files, the rules, Alertmanager."""
    return {
        "global": {
            "scrape_interval": settings.scrape_interval,
            "scrape_timeout": settings.scrape_timeout,
            "evaluation_interval": settings.evaluation_interval,
        },
        "rule_files": [str(out / "rules" / "*.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [settings.alertmanager_address]}]}]},
        "scrape_configs": [
            {"job_name": job, "file_sd_configs": [{"files": [str(out / "targets" / f"{job}.json")]}]}
            for job in (APP_JOB, DAPRD_JOB)
        ],
    }


def rules_with_for(rules: dict[str, Any], alert_for: str | None) -> dict[str, Any]:
    """A rule file's content with every alert's `for:` replaced by `alert_for` (None: unchanged)."""
    if alert_for is None:
        return rules
    groups = []
    for group in rules.get("groups", []):
        changed = [{**rule, "for": alert_for} if "alert" in rule else rule for rule in group.get("rules", [])]
        groups.append({**group, "rules": changed})
    return {**rules, "groups": groups}


def alertmanager_config(settings: StackSettings, token_file: Path) -> dict[str, Any]:
    """alertmanager.yml: every alert to the monitor's webhook, resolutions included."""
    return {
        "route": {
            "receiver": "monitor",
            "group_by": ["alertname", "app_id", "job"],
            "group_wait": settings.group_wait,
            "group_interval": settings.group_interval,
            "repeat_interval": settings.repeat_interval,
        },
        "receivers": [
            {
                "name": "monitor",
                "webhook_configs": [
                    {
                        "url": settings.webhook_url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}},
                    }
                ],
            }
        ],
    }


def write_stack(run_file: Path, rules_dir: Path, data_dir: Path, settings: StackSettings) -> list[Path]:
    """Write Prometheus' and Alertmanager's configuration under `data_dir`; returns the files written.

    The webhook token file (`data_dir/alertmanager/webhook-token`) is written by scripts/infra.sh
    from the secrets file; only its path is named here.
    """
    prometheus_dir = data_dir / "prometheus"
    alertmanager_dir = data_dir / "alertmanager"
    written: list[Path] = []

    def write(path: Path, content: str) -> None:
        # Renamed into place: a running Prometheus re-reads target files as they change, and
        # must never see one half written.
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(content)
        partial.replace(path)
        written.append(path)

    targets = scrape_targets(run_file)
    for job in (APP_JOB, DAPRD_JOB):
        write(prometheus_dir / "targets" / f"{job}.json", json.dumps(file_sd(targets, job), indent=2))
    sources = sorted(rules_dir.glob("*.yml"))
    for stale in (prometheus_dir / "rules").glob("*.yml"):
        if stale.name not in {source.name for source in sources}:
            stale.unlink()
    for source in sources:
        rules = rules_with_for(yaml.safe_load(source.read_text()), settings.alert_for)
        write(prometheus_dir / "rules" / source.name, yaml.safe_dump(rules, sort_keys=False))
    write(prometheus_dir / "prometheus.yml", yaml.safe_dump(prometheus_config(settings, prometheus_dir)))
    token_file = alertmanager_dir / "webhook-token"
    write(alertmanager_dir / "alertmanager.yml", yaml.safe_dump(alertmanager_config(settings, token_file)))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-file", type=Path, default=Path("dapr.yaml"))
    parser.add_argument("--rules", type=Path, default=Path("monitoring/rules"))
    parser.add_argument("--data", type=Path, default=Path(".data"))
    args = parser.parse_args()
    write_stack(args.run_file, args.rules, args.data.resolve(), StackSettings())


if __name__ == "__main__":
    main()
