"""The monitoring stack's configuration comes from the run file: a new app needs no second list."""

import json
from pathlib import Path

import yaml

from monitor.stack import APP_JOB, DAPRD_JOB, StackSettings, rules_with_for, scrape_targets, write_stack

ROOT = Path(__file__).resolve().parents[2]


def test_every_app_and_every_sidecar_of_the_run_file_is_a_target() -> None:
    apps = yaml.safe_load((ROOT / "dapr.yaml").read_text())["apps"]
    targets = scrape_targets(ROOT / "dapr.yaml")
    for app in apps:
        if "appPort" in app:
            assert (app["appID"], APP_JOB, f"127.0.0.1:{app['appPort']}") in [
                (t.app_id, t.job, t.address) for t in targets
            ]
        assert (app["appID"], DAPRD_JOB, f"127.0.0.1:{app['metricsPort']}") in [
            (t.app_id, t.job, t.address) for t in targets
        ]
    assert all(t.address.startswith("127.0.0.1:") for t in targets)


def test_an_app_added_to_the_run_file_is_scraped_with_its_sidecar(tmp_path: Path) -> None:
    run_file = tmp_path / "dapr.yaml"
    run_file.write_text(
        yaml.safe_dump({"version": 1, "apps": [{"appID": "newcomer", "appPort": 8200, "metricsPort": 9200}]})
    )
    write_stack(run_file, ROOT / "monitoring" / "rules", tmp_path, StackSettings())
    apps = json.loads((tmp_path / "prometheus" / "targets" / "app.json").read_text())
    sidecars = json.loads((tmp_path / "prometheus" / "targets" / "daprd.json").read_text())
    assert apps == [{"targets": ["127.0.0.1:8200"], "labels": {"app_id": "newcomer"}}]
    assert sidecars == [{"targets": ["127.0.0.1:9200"], "labels": {"app_id": "newcomer"}}]


def test_alertmanager_posts_to_the_monitor_with_resolutions_and_a_token_file(tmp_path: Path) -> None:
    write_stack(ROOT / "dapr.yaml", ROOT / "monitoring" / "rules", tmp_path, StackSettings())
    config = yaml.safe_load((tmp_path / "alertmanager" / "alertmanager.yml").read_text())
    (hook,) = config["receivers"][0]["webhook_configs"]
    assert hook["url"] == "http://127.0.0.1:8108/alerts/webhook"
    assert hook["send_resolved"] is True
    assert hook["http_config"]["authorization"]["credentials_file"] == str(tmp_path / "alertmanager" / "webhook-token")


def test_a_shortened_for_applies_to_alerts_and_leaves_recording_rules_alone() -> None:
    rules = {
        "groups": [
            {"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "5m"}, {"record": "r", "expr": "up"}]}
        ]
    }
    changed = rules_with_for(rules, "3s")
    assert changed["groups"][0]["rules"] == [
        {"alert": "A", "expr": "up == 0", "for": "3s"},
        {"record": "r", "expr": "up"},
    ]
    assert rules_with_for(rules, None) is rules
