"""Start real daprd and app processes for tests: free loopback ports, polled readiness, logs kept.

Every process runs in its own process group and is killed with it on teardown. A wait fails
fast, with the tail of each process's log, when one of them has died.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
SERVICES = frozenset(
    {"gateway", "ingestion", "features", "training", "registry", "inference", "prompts", "guard", "ui", "monitor"}
)
RUNTIME = Path(os.environ.get("DAPR_RUNTIME_PATH", ROOT / ".runtime"))
DAPRD = RUNTIME / ".dapr" / "bin" / "daprd"
SECRETS_FILE = ROOT / ".data" / "secrets.json"
# The platform's sidecar configuration; a sidecar started here runs with `own_config`'s copy of it.
CONFIG = ROOT / "dapr-config" / "config.yaml"
# A resources path: never the folder of CONFIG (dapr.yaml says why).
RESILIENCY_DIR = ROOT / "dapr-config" / "resiliency"
# Who may invoke each app, and which methods: a second --config for that app's sidecar.
ACCESS_DIR = ROOT / "dapr-config" / "access"
SENTRY = RUNTIME / ".dapr" / "bin" / "sentry"


@dataclass(frozen=True)
class Profile:
    """A folder of Dapr components and its profile.yaml (components/profiles/README.md).

    `servers`: what scripts/infra.sh starts for it; `broker`: the one behind `pubsub`;
    `after_broker_restart`: `resumes` or `restart-sidecar` (a subscriber's sidecar must be);
    `late_subscriber`: what an app's first subscription gets of earlier events (`history` or
    `new`); `store`: the state store's type without `state.` (`redis`, `postgresql`), from its
    statestore.yaml.
    """

    name: str
    folder: Path
    servers: tuple[str, ...]
    broker: str
    after_broker_restart: str
    late_subscriber: str
    store: str


def load_profile(spec: str | Path) -> Profile:
    """Profile `spec`: `default` (components/), a folder name under components/profiles/, or a
    path to any folder with a profile.yaml (as scripts/infra.sh profile-dir reads it).
    Raises FileNotFoundError when there is no such profile."""
    if str(spec) == "default":
        folder = ROOT / "components"
    elif (Path(spec) / "profile.yaml").is_file():
        folder = Path(spec).resolve()
    else:
        folder = ROOT / "components" / "profiles" / str(spec)
    if not (folder / "profile.yaml").is_file():
        raise FileNotFoundError(
            f"no profile {spec!r}: default, a folder of components/profiles/, or one with profile.yaml"
        )
    declared = yaml.safe_load((folder / "profile.yaml").read_text()) or {}
    state = yaml.safe_load((folder / "statestore.yaml").read_text())
    name = "default" if folder == ROOT / "components" else folder.name
    return Profile(
        name,
        folder,
        tuple(declared["servers"]),
        declared["broker"],
        declared["after_broker_restart"],
        declared["late_subscriber"],
        state["spec"]["type"].removeprefix("state."),
    )


# Every profile in the repo: the default and each folder of components/profiles/ with a profile.yaml.
PROFILES = {
    profile.name: profile.folder
    for profile in map(
        load_profile, ["default", *sorted(p.parent.name for p in ROOT.glob("components/profiles/*/profile.yaml"))]
    )
}


def gateway_secret_store(secrets_file: Path) -> str:
    """A local-file secret store component, scoped to the gateway, reading `secrets_file`: the
    gateway's own API keys for a test that rewrites them (rotation, scopes)."""
    return f"""apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: secretstore
spec:
  type: secretstores.local.file
  version: v1
  metadata:
    - name: secretsFile
      value: {secrets_file}
scopes:
  - gateway
"""


def sidecar_limit_args() -> list[str]:
    """daprd's body and header limits as dapr.yaml gives them to `make up`'s sidecars, as flags."""
    common = yaml.safe_load((ROOT / "dapr.yaml").read_text())["common"]
    return ["--max-body-size", common["maxBodySize"], "--read-buffer-size", common["readBufferSize"]]


# Every daprd a test starts has the limits of `make up` (uploads up to ingestion's limit pass them).
SIDECAR_LIMIT_ARGS = sidecar_limit_args()
INGESTION_DAPRD_ARGS: list[str] = []  # every sidecar has SIDECAR_LIMIT_ARGS now; kept for older callers


def bearer(secrets: dict[str, str]) -> dict[str, str]:
    """The Authorization header with the platform's first gateway API key."""
    return {"Authorization": f"Bearer {secrets['gateway-api-keys'].split(',')[0]}"}


# Test servers take ports below Linux's ephemeral range (32768-60999). A port from bind(0) lies in
# that range, where any outgoing connection (a client, a daprd dialling Redis) may take it between
# the check and the server's own bind; and two bind(0) calls may return the same port: CI once gave
# one daprd the same port for its internal gRPC and its metrics servers, and it exited at start.
TEST_PORT_RANGE = (20000, 29999)
RESERVED_PORTS = frozenset({25672})  # RabbitMQ's Erlang distribution port (scripts/infra.sh)
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port in TEST_PORT_RANGE, free now and not handed out before in this process.

    Raises RuntimeError when no port in the range is left (a session hands out a few thousand)."""
    low, high = TEST_PORT_RANGE
    size = high - low + 1
    # Every port of the range once, from a random one on: no list of 10,000 built per call.
    offset = random.randrange(size)
    for step in range(size):
        port = low + (offset + step) % size
        if port in _handed_out or port in RESERVED_PORTS:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port left in {low}-{high}")


def read_secrets() -> dict[str, str]:
    return json.loads(SECRETS_FILE.read_text())


class ProcessDied(AssertionError):
    pass


@dataclass
class ManagedProcess:
    """One child process in its own group, its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path = ROOT
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def assert_alive(self) -> None:
        if not self.alive:
            code = self.popen.returncode if self.popen else None
            raise ProcessDied(f"{self.name} exited with {code}; last log lines:\n{self.log_tail()}")

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            assert self.popen is not None
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, then SIGKILL what is left after `timeout`."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        with contextlib.suppress(ProcessLookupError):  # children that outlived the leader
            os.killpg(self.popen.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(5)


def wait_until(
    condition: Callable[[], Any],
    *,
    what: str,
    timeout: float = 60.0,
    interval: float = 0.1,
    watch: Iterable[ManagedProcess] = (),
) -> Any:
    """Poll `condition` until it returns something truthy; fail fast if a watched process dies."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for process in watch:
            process.assert_alive()
        try:
            result = condition()
            if result:
                return result
        except (httpx.HTTPError, OSError, ValueError, KeyError) as error:
            last_error = error
        time.sleep(interval)
    logs = "\n".join(f"--- {p.name} ({p.log_path}):\n{p.log_tail()}" for p in watch)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})\n{logs}")


def wait_for_status(url: str, status: int, what: str, timeout: float, watch: Iterable[ManagedProcess]) -> None:
    """Poll a GET until it answers `status`."""
    with httpx.Client(timeout=5.0) as http:
        wait_until(lambda: http.get(url).status_code == status, what=what, timeout=timeout, watch=watch)


@dataclass
class Sentry:
    """Dapr's sentry on loopback: the CA that signs each sidecar's workload certificate, whose
    SPIFFE id (spiffe://public/ns/default/<app-id>) the callee's sidecar checks against its
    accessControl policy. It makes its own root and issuer in `data_dir` on first start.

    Sentry 1.18.2 binds its healthz server on every interface whatever --healthz-listen-address
    says (cmd/sentry/app/app.go never passes it on), so readiness is read from the CA's files
    and its gRPC port on 127.0.0.1 instead, and its metrics server is off.
    """

    data_dir: Path
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def trust_anchors(self) -> str:
        """The root certificate (PEM) every sidecar trusts: daprd's DAPR_TRUST_ANCHORS."""
        return (self.data_dir / "ca.crt").read_text()

    def start(self, timeout: float = 30.0) -> Sentry:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(SENTRY),
            "--issuer-credentials", str(self.data_dir),
            "--config", str(ROOT / "dapr-config" / "sentry" / "config.yaml"),  # as scripts/control-plane.sh
            "--port", str(self.port), "--listen-address", "127.0.0.1",
            "--healthz-port", str(free_port()),
            "--enable-metrics=false",
        ]  # fmt: skip
        self.process = ManagedProcess("sentry", argv, dict(os.environ), self.log_dir / f"sentry-{self.port}.log")
        self.process.start()

        def serving() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return (self.data_dir / "ca.crt").is_file()

        try:
            wait_until(serving, what="Dapr's sentry", timeout=timeout, watch=[self.process])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


_sentry: Sentry | None = None


def shared_sentry() -> Sentry:
    """One sentry for every sidecar this test process starts (started on first use, stopped at exit)."""
    global _sentry
    if _sentry is None or _sentry.process is None or not _sentry.process.alive:
        data = Path(tempfile.mkdtemp(prefix="genai-sentry-"))
        _sentry = Sentry(data_dir=data / "credentials", log_dir=data).start()
        atexit.register(_sentry.stop)
    return _sentry


NAMES_FILE = "nameresolution.db"


def own_config(folder: Path) -> Path:
    """Write dapr-config/config.yaml into `folder` with a name-resolution file of its own there.

    The platform's names file (.data/nameresolution.db, relative to daprd's working directory, the
    repo root) lists every sidecar of a running `make up`: a test's sidecar registered there is
    load-balanced with the platform's app of the same id, whose sentry's certificates fail the
    mTLS handshake, and the platform's apps answer the test's calls. Nothing else is changed.
    """
    config = yaml.safe_load(CONFIG.read_text())
    # daprd expands $VARS in this file (os.ExpandEnv): a path holding one would name another file.
    assert "$" not in str(folder), f"daprd would expand the $ in {folder}"
    config["spec"]["nameResolution"]["configuration"]["connectionString"] = str(folder / NAMES_FILE)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


_config: Path | None = None


def session_config() -> Path:
    """The Configuration of every sidecar this process starts: `own_config` in a folder of this
    process (written on first use, removed at exit), so its sidecars find only each other: their
    names are in `session_config().parent / NAMES_FILE`."""
    global _config
    if _config is None:
        folder = Path(tempfile.mkdtemp(prefix="genai-dapr-config-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _config = own_config(folder)
    return _config


def registered_sidecars(names_file: Path) -> set[tuple[str, str]]:
    """(app id, internal gRPC address) of each sidecar registered in a SQLite name-resolution file."""
    with contextlib.closing(sqlite3.connect(f"file:{names_file}?mode=ro", uri=True)) as db:
        return set(db.execute("SELECT app_id, address FROM hosts"))


@dataclass
class Daprd:
    """A real daprd bound to 127.0.0.1 on free ports, with API and app tokens.

    With `mtls` (the default, as in `make up` and the cluster), it takes its workload certificate
    from the shared sentry and layers dapr-config/access/<app-id>.yaml on `session_config()` (the
    platform's config, with names of this process's own): only the callers and methods listed
    there may invoke it (tests/integration/test_access_control.py).
    daprd then speaks TLS to placement and scheduler too, which `ControlPlane` runs with TLS.
    """

    app_id: str
    resources: list[Path]
    log_dir: Path
    app_port: int | None = None
    dapr_api_token: str | None = None
    app_api_token: str | None = None
    extra_args: list[str] = field(default_factory=list)
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    internal_grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    mtls: bool = True
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"dapr-api-token": self.dapr_api_token} if self.dapr_api_token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)

    def start(self) -> Daprd:
        if not DAPRD.exists():
            raise FileNotFoundError(f"{DAPRD} is missing: run `make dapr` first")
        argv = [
            str(DAPRD),
            "--app-id",
            self.app_id,
            "--dapr-http-port",
            str(self.http_port),
            "--dapr-grpc-port",
            str(self.grpc_port),
            "--dapr-internal-grpc-port",
            str(self.internal_grpc_port),
            "--metrics-port",
            str(self.metrics_port),
            "--dapr-listen-addresses",
            "127.0.0.1",
            "--config",
            str(session_config()),
            "--placement-host-address",
            "",
            "--scheduler-host-address",
            "",
            "--log-level",
            "info",
            *[arg for path in self.resources for arg in ("--resources-path", str(path))],
            *SIDECAR_LIMIT_ARGS,
            *self.extra_args,
        ]
        if self.app_port is not None:
            argv += ["--app-port", str(self.app_port), "--app-channel-address", "127.0.0.1"]
        env = {k: v for k, v in os.environ.items() if k not in ("DAPR_API_TOKEN", "APP_API_TOKEN")}
        if self.dapr_api_token:
            env["DAPR_API_TOKEN"] = self.dapr_api_token
        if self.app_api_token:
            env["APP_API_TOKEN"] = self.app_api_token
        if self.mtls:
            sentry = shared_sentry()
            argv += ["--enable-mtls", "--sentry-address", sentry.address]
            env["DAPR_TRUST_ANCHORS"] = sentry.trust_anchors
            # Without mTLS a caller has no identity and a policy would refuse every call.
            if (access := ACCESS_DIR / f"{self.app_id}.yaml").is_file():
                argv += ["--config", str(access)]
        self.process = ManagedProcess(
            f"daprd[{self.app_id}]", argv, env, self.log_dir / f"daprd-{self.app_id}-{self.http_port}.log"
        ).start()
        return self

    def wait_ready(self, timeout: float = 60.0, watch: Iterable[ManagedProcess] = ()) -> None:
        """Wait for /v1.0/healthz: components loaded and, with an app port, the app reachable."""
        assert self.process is not None
        wait_for_status(
            f"{self.url}/v1.0/healthz", 204, f"daprd for {self.app_id} to be healthy", timeout, [self.process, *watch]
        )


@dataclass
class ServiceApp:
    """One of the platform's services, run as `python -m <package>` like dapr.yaml does."""

    app_id: str
    log_dir: Path
    sidecar: Daprd | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    module: str | None = None
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceApp:
        env = {**os.environ, "APP_ID": self.app_id, "APP_PORT": str(self.port), "ZIPKIN_ENDPOINT": "", **self.env}
        if self.sidecar is not None:
            env["DAPR_HTTP_PORT"] = str(self.sidecar.http_port)
            env["DAPR_GRPC_PORT"] = str(self.sidecar.grpc_port)
            for name, value in (
                ("DAPR_API_TOKEN", self.sidecar.dapr_api_token),
                ("APP_API_TOKEN", self.sidecar.app_api_token),
            ):
                if value:
                    env[name] = value
        if self.module is not None:  # a test double from tests/integration
            env["PYTHONPATH"] = str(ROOT / "tests" / "integration")
        argv = [sys.executable, "-m", self.module or self.app_id]
        self.process = ManagedProcess(self.app_id, argv, env, self.log_dir / f"{self.app_id}-{self.port}.log").start()
        return self

    def wait_alive(self, timeout: float = 60.0) -> None:
        assert self.process is not None
        wait_for_status(f"{self.url}/healthz", 200, f"{self.app_id} to answer /healthz", timeout, [self.process])


@dataclass
class AppWithSidecar:
    """A service and its daprd, started together and stopped together."""

    app: ServiceApp
    sidecar: Daprd

    @classmethod
    def build(
        cls,
        app_id: str,
        log_dir: Path,
        secrets: dict[str, str],
        *,
        resources: list[Path] | None = None,
        env: dict[str, str] | None = None,
        module: str | None = None,
        extra_args: list[str] | None = None,
    ) -> AppWithSidecar:
        """A service and its daprd, not started yet (its ports are chosen: `app.port`, `sidecar.http_port`).

        Both get the platform's Dapr API and app tokens; `resources` defaults to the default
        profile's components and the resiliency policies; `module` runs a test double instead of
        the service; `extra_args` go to daprd.
        """
        sidecar = Daprd(
            app_id=app_id,
            resources=resources or [PROFILES["default"], RESILIENCY_DIR],
            log_dir=log_dir,
            dapr_api_token=secrets["dapr-api-token"],
            app_api_token=secrets["app-api-token"],
            extra_args=extra_args or [],
        )
        app = ServiceApp(app_id=app_id, log_dir=log_dir, sidecar=sidecar, env=env or {}, module=module)
        sidecar.app_port = app.port
        return cls(app, sidecar)

    @property
    def processes(self) -> list[ManagedProcess]:
        return [p for p in (self.app.process, self.sidecar.process) if p is not None]

    def start(self, timeout: float = 90.0) -> AppWithSidecar:
        self.app.start()
        self.sidecar.start()
        self.app.wait_alive(timeout)
        self.sidecar.wait_ready(timeout, watch=[p for p in [self.app.process] if p])
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        wait_for_status(f"{self.app.url}/readyz", 200, f"{self.app.app_id} to be ready", timeout, self.processes)

    def crash_and_restart_app(self, timeout: float = 90.0) -> None:
        """SIGKILL the app, as a crash would, and start it again on its port beside the same sidecar."""
        assert self.app.process is not None
        self.app.process.kill()
        self.app.start()
        self.app.wait_alive(timeout)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


@dataclass
class ControlPlane:
    """Dapr's placement (actors, workflows) and scheduler (workflow timers, reminders) on loopback.

    Sidecars started with `daprd_args` host workflows; the others keep running without them. Both
    serve gRPC over TLS with certificates from the shared sentry, as `make up` runs them: an mTLS
    sidecar (the default) speaks TLS to them and refuses a plain connection.
    """

    log_dir: Path
    data_dir: Path
    placement_port: int = field(default_factory=free_port)
    scheduler_port: int = field(default_factory=free_port)
    processes: list[ManagedProcess] = field(default_factory=list)
    tls: bool = True  # False only for sidecars started with Daprd(mtls=False), as bench/mtls compares

    @property
    def daprd_args(self) -> list[str]:
        # Later flags win: these replace the harness's empty defaults.
        return [
            "--placement-host-address",
            f"127.0.0.1:{self.placement_port}",
            "--scheduler-host-address",
            f"127.0.0.1:{self.scheduler_port}",
        ]

    def start(self, timeout: float = 60.0) -> ControlPlane:
        binaries = RUNTIME / ".dapr" / "bin"
        placement_health, scheduler_health = free_port(), free_port()
        etcd_client, etcd_peer, raft = free_port(), free_port(), free_port()
        loopback = ["--listen-address", "127.0.0.1", "--healthz-listen-address", "127.0.0.1"]
        if self.tls:
            sentry = shared_sentry()
            loopback += ["--tls-enabled", "--sentry-address", sentry.address]
            loopback += ["--trust-anchors-file", str(sentry.data_dir / "ca.crt")]
        metrics = ["--metrics-listen-address", "127.0.0.1"]
        placement = [
            str(binaries / "placement"),
            "--port", str(self.placement_port), *loopback,
            "--healthz-port", str(placement_health),
            "--metrics-port", str(free_port()), *metrics,
            "--initial-cluster", f"dapr-placement-0=127.0.0.1:{raft}",
        ]  # fmt: skip
        scheduler = [
            str(binaries / "scheduler"),
            "--port", str(self.scheduler_port), *loopback,
            "--healthz-port", str(scheduler_health),
            "--metrics-port", str(free_port()), *metrics,
            "--etcd-data-dir", str(self.data_dir / "scheduler"),
            "--etcd-client-listen-address", "127.0.0.1", "--etcd-client-port", str(etcd_client),
            "--etcd-initial-cluster", f"dapr-scheduler-server-0=http://127.0.0.1:{etcd_peer}",
        ]  # fmt: skip
        for name, argv in (("placement", placement), ("scheduler", scheduler)):
            log = self.log_dir / f"{name}-{self.placement_port}.log"
            self.processes.append(ManagedProcess(name, argv, dict(os.environ), log).start())
        try:
            for port in (placement_health, scheduler_health):
                wait_for_status(
                    f"http://127.0.0.1:{port}/healthz", 200, "Dapr's control plane", timeout, self.processes
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def start_pair(
    app_id: str, log_dir: Path, secrets: dict[str, str], *, ready: bool = True, timeout: float = 180.0, **options: Any
) -> AppWithSidecar:
    """Start a platform service beside its daprd, stopped again if it fails.

    `options` are `AppWithSidecar.build`'s (resources, env, module, extra_args). Returns once the
    app answers /healthz and daprd /v1.0/healthz; with `ready`, once the app's /readyz says ready
    too (its models loaded, its start-up work done). Raises `ProcessDied` when a process exits,
    TimeoutError after `timeout` seconds.
    """
    pair = AppWithSidecar.build(app_id, log_dir, secrets, **options)
    try:
        pair.start(timeout)
        if ready:
            pair.wait_ready(timeout)
    except BaseException:
        pair.stop()
        raise
    return pair


def metric(pair: AppWithSidecar, name: str, **labels: str) -> float:
    """The sum of an app's Prometheus samples called `name` with `labels`, read from its /metrics."""
    text = httpx.get(f"{pair.app.url}/metrics", timeout=5.0).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
