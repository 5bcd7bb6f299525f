"""Fixtures shared by every test: real servers, real daprd, real services; nothing mocked."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import (
    PROFILES,
    RESILIENCY_DIR,
    ROOT,
    AppWithSidecar,
    ControlPlane,
    ManagedProcess,
    load_profile,
    read_secrets,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--profile",
        action="append",
        default=[],
        help="run the profile-parametrised tests on this profile only (repeatable): default, a folder "
        "of components/profiles/ or any folder with a profile.yaml; without it, every profile",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Each profile in turn for a test that takes `profile`: the same test, another broker and store.
    if "profile" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--profile") or sorted(PROFILES)
        metafunc.parametrize("profile", chosen, indirect=True, scope="session")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test's folder says what kind it is, so `-m unit` and friends need no decorator.
    for item in items:
        for kind in ("unit", "integration", "e2e", "ui", "k8s", "containers"):
            if f"{Path('tests') / kind}" in str(item.path):
                item.add_marker(kind)
    # The whole platform (the `platform` fixture, fixed ports and app-ids as `make up` runs it) starts once
    # for the tests that use it, and they run last, so no other test meets its apps on the shared broker.
    # The session's browser (tests/ui's `browser`, Playwright's sync API) runs an event loop in this
    # thread from its first use to the session's end, where every later `asyncio.run` fails: its
    # tests run last too (a browser test without the platform ran mid-session and failed 300 others).
    items.sort(key=lambda item: bool({"platform", "browser"} & set(getattr(item, "fixturenames", ()))))


# The kinds of test that start nothing on the servers `make up` uses: they may run beside it.
APART_FROM_THE_PLATFORM = frozenset({"unit", "k8s"})


def platform_running() -> bool:
    """Whether a platform that `make up` started from this checkout runs (`run-platform.sh running`)."""
    return subprocess.run(["bash", str(ROOT / "scripts" / "run-platform.sh"), "running"], check=False).returncode == 0


@pytest.fixture(scope="session", autouse=True)
def refuse_beside_the_platform(request: pytest.FixtureRequest) -> None:
    """Stop the session before its first test when it would share the servers of a running `make up`.

    Every sidecar here resolves names in a file of its own (harness.session_config), so none
    reaches the platform's apps through service invocation. What stays shared are the servers on
    their fixed ports and what lives in them: the pub/sub streams and state in Redis database 0
    (and the other profiles' queues, streams and tables), read by consumer groups named by app id,
    so the platform's apps take a test's events and a test's apps take the platform's; and the
    `platform` fixture's apps need the very ports `make up` holds. Unit and Kubernetes tests
    share none of it and run all the same.
    """
    kinds = [{marker.name for marker in item.iter_markers()} for item in request.session.items]
    if any(not kind & APART_FROM_THE_PLATFORM for kind in kinds) and platform_running():
        pytest.exit(
            "the platform that `make up` started is running, and these tests start their own apps on the "
            "same brokers and stores (its apps would consume the tests' events and the tests' apps its own): "
            "run `make down` first, or only `-m unit` / `-m k8s` beside it",
            returncode=1,
        )


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("process-logs")


@pytest.fixture(scope="session")
def platform(log_dir: Path, secrets: dict[str, str]) -> Iterator[ManagedProcess]:
    """The whole platform, started the way a user starts it (`dapr run -f` via scripts/run-platform.sh)."""
    env = {**os.environ, "DAPR_RUNTIME_PATH": str(ROOT / ".runtime")}
    process = ManagedProcess(
        "dapr run -f", ["bash", str(ROOT / "scripts" / "run-platform.sh"), "default"], env, log_dir / "platform.log"
    ).start()
    yield process
    # The CLI stops every app and sidecar it started on SIGINT, as on Ctrl-C. Its stop can take
    # 30 s for the members, 10 s for the CLI and 10 s for sentry (scripts/run-platform.sh), so wait
    # past that; then `run-platform.sh stop` (what `make down` runs) ends whatever a stop cut short
    # left, e.g. the CLI in its own process group, which killing the script's group never reaches.
    process.signal(signal.SIGINT)
    try:
        assert process.popen is not None
        process.popen.wait(60)
    except subprocess.TimeoutExpired:
        pass
    process.stop()
    subprocess.run(["bash", str(ROOT / "scripts" / "run-platform.sh"), "stop"], env=env, check=False, timeout=90)


@pytest.fixture(scope="session")
def control_plane(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """Placement and scheduler for the sidecars of apps that host workflows (`control_plane.daprd_args`)."""
    plane = ControlPlane(log_dir=log_dir, data_dir=tmp_path_factory.mktemp("control-plane")).start()
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def secrets() -> dict[str, str]:
    # infra.sh creates the secrets file with fresh values the first time it runs.
    subprocess.run(["bash", str(ROOT / "scripts" / "infra.sh"), "secrets"], check=True, capture_output=True)
    return read_secrets()


def start_servers(profile: str) -> None:
    """Start (idempotently) the servers a profile's profile.yaml declares; infra.sh polls them until ready."""
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "infra.sh"), "start", f"profile:{load_profile(profile).folder}"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"starting the {profile} servers failed:\n{result.stdout}\n{result.stderr}")


@pytest.fixture(scope="session")
def default_broker() -> str:
    start_servers("default")
    return "default"


@pytest.fixture(scope="session")
def profile(request: pytest.FixtureRequest) -> str:
    """Each profile in turn (`--profile` picks some): the same tests, another broker and store, no code change."""
    start_servers(request.param)
    return request.param


StartApp = Callable[..., AppWithSidecar]


@pytest.fixture
def start_app(log_dir: Path, secrets: dict[str, str]) -> Iterator[StartApp]:
    """Start a platform service beside a real daprd; everything started is stopped afterwards."""
    started: list[AppWithSidecar] = []

    def start(
        app_id: str,
        profile: str = "default",
        *,
        env: dict[str, str] | None = None,
        module: str | None = None,
        extra_args: list[str] | None = None,
    ) -> AppWithSidecar:
        pair = AppWithSidecar.build(
            app_id,
            log_dir,
            secrets,
            resources=[load_profile(profile).folder, RESILIENCY_DIR],
            env=env,
            module=module,
            extra_args=extra_args,
        )
        started.append(pair)
        return pair.start()

    yield start
    for pair in reversed(started):
        pair.stop()
