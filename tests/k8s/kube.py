"""A real Kubernetes control plane with Dapr's control plane, as plain processes on loopback.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake nodes: pods become
Running without a kubelet), then Dapr's sentry, sidecar injector and operator in Kubernetes mode,
all built from Go modules by scripts/build-k8s.sh (sentry by scripts/build-dapr.sh). The recipe
and its traps: ../shared/k8s-local-cluster.md; each step below says why it is there.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from harness import ROOT, RUNTIME, ManagedProcess, free_port, wait_until

K8S_RUNTIME = Path(os.environ.get("K8S_RUNTIME_PATH", ROOT / ".runtime" / "k8s"))
BIN = K8S_RUNTIME / "bin"
KUBECTL = BIN / "kubectl"
SENTRY = RUNTIME / ".dapr" / "bin" / "sentry"
CONTROL_PLANE_BINARIES = [
    BIN / name
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "injector")
] + [BIN / "operator", SENTRY]

K8S = ROOT / "k8s"
# Every kustomization a user applies: the overlays, and the smoke Job.
OVERLAYS = ["overlays/local", "overlays/production", "overlays/production-gpu", "jobs/smoke"]
APPS = ["gateway", "ingestion", "features", "training", "registry", "inference", "prompts", "guard", "ui", "monitor"]


def kustomize(path: str) -> list[dict]:
    """`kubectl kustomize` of one kustomization under k8s/, as a list of objects."""
    result = subprocess.run([str(KUBECTL), "kustomize", str(K8S / path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize k8s/{path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


DAPR_NAMESPACE = "dapr-system"
TRUST_DOMAIN = "cluster.local"
# The injector's serving certificate (from sentry) names only this host, so the webhook URL must
# use it; a hosts file private to the API server maps it to 127.0.0.1 (see _in_private_hosts).
INJECTOR_HOST = f"dapr-sidecar-injector.{DAPR_NAMESPACE}.svc"
SIDECAR_IMAGE = "ghcr.io/dapr/daprd:1.18.2"
SERVICE_RANGE = "10.0.0.0/24"
# Apps' pods get addresses from kwok's range; nothing is ever sent to them (no kubelet, no CNI).
POD_RANGE = "10.0.1.0/24"


def missing_binaries() -> list[Path]:
    return [path for path in CONTROL_PLANE_BINARIES if not path.is_file()]


def free_ports(count: int) -> list[int]:
    """count distinct free loopback ports (harness.free_port: below the ephemeral range)."""
    return [free_port() for _ in range(count)]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(pki: Path) -> None:
    """A CA; the API server's serving cert; an admin client cert (group system:masters); the
    service-account key pair that signs and checks tokens (sentry's pod-bound tokens too)."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=genai-test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=pki)  # fmt: skip
    sans = ",".join(
        ["IP:127.0.0.1", "IP:10.0.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default"]
        + ["DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local"]
    )
    for name, subject, ext in (
        ("apiserver", "/CN=kube-apiserver", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth"),
        ("admin", "/CN=admin/O=system:masters", "extendedKeyUsage=clientAuth"),
    ):
        (pki / f"{name}.ext").write_text(ext + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=pki)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=pki)  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


@dataclass
class Cluster:
    """The running cluster; `kubectl(...)` talks to it as cluster admin."""

    workdir: Path
    log_dir: Path
    processes: list[ManagedProcess] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def get_json(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    # ---- start and stop ------------------------------------------------------------------

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ManagedProcess:
        process = ManagedProcess(
            name=name,
            argv=argv,
            env={**os.environ, **(env or {})},
            log_path=self.log_dir / f"{name}.log",
            cwd=self.workdir,
        ).start()
        self.processes.append(process)
        return process

    def _in_private_hosts(self, argv: list[str]) -> list[str]:
        """Run argv in a mount namespace of its own with our hosts file over /etc/hosts: the API
        server must resolve the injector's name, and sentry `kubernetes.default.svc`, to 127.0.0.1,
        with no DNS query leaving the machine and the machine's own /etc/hosts untouched."""
        hosts = self.workdir / "hosts"
        hosts.write_text(
            "127.0.0.1 localhost " + INJECTOR_HOST + " kubernetes kubernetes.default kubernetes.default.svc"
            " kubernetes.default.svc.cluster.local\n"
        )
        script = 'mount --bind "$0" /etc/hosts && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(hosts), *argv]

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def start(self) -> Cluster:
        try:
            self._start_kubernetes()
            self._start_dapr()
        except BaseException:
            self.stop()
            raise
        return self

    def _write_kubeconfig(self, port: int) -> None:
        pki = self.workdir / "pki"
        self.kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "test",
                            "cluster": {
                                "server": f"https://127.0.0.1:{port}",
                                "certificate-authority": str(pki / "ca.crt"),
                            },
                        }
                    ],
                    "users": [
                        {
                            "name": "admin",
                            "user": {
                                "client-certificate": str(pki / "admin.crt"),
                                "client-key": str(pki / "admin.key"),
                            },
                        }
                    ],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
                    "current-context": "test",
                }
            )
        )

    def _start_kubernetes(self) -> None:
        pki = self.workdir / "pki"
        make_pki(pki)
        names = ["etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"]
        self.ports.update(zip(names, free_ports(len(names)), strict=True))
        p = self.ports
        self._write_kubeconfig(p["apiserver"])
        kubeconfig = str(self.kubeconfig)

        etcd_url, peer_url = f"http://127.0.0.1:{p['etcd']}", f"http://127.0.0.1:{p['etcd-peer']}"
        # --unsafe-no-fsync: a throwaway store; fsync on a busy disk is most of etcd's latency.
        etcd = self._start(
            "etcd",
            [str(BIN / "etcd"), "--name", "test", "--data-dir", str(self.workdir / "etcd"),
             "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"test={peer_url}", "--log-level", "warn", "--unsafe-no-fsync"],
        )  # fmt: skip
        apiserver = self._start(
            "kube-apiserver",
            self._in_private_hosts(
                [str(BIN / "kube-apiserver"), "--etcd-servers", etcd_url,
                 "--bind-address", "127.0.0.1", "--secure-port", str(p["apiserver"]),
                 # A loopback advertise address is refused unless no endpoint reconciler runs.
                 "--advertise-address", "127.0.0.1", "--endpoint-reconciler-type", "none",
                 "--cert-dir", str(self.workdir / "apiserver-certs"),
                 "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
                 "--client-ca-file", str(pki / "ca.crt"),
                 "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                 "--service-account-key-file", str(pki / "sa.pub"),
                 "--service-account-signing-key-file", str(pki / "sa.key"),
                 "--service-cluster-ip-range", SERVICE_RANGE,
                 "--authorization-mode", "Node,RBAC", "--profiling=false"]
            ),
        )  # fmt: skip
        wait_until(
            lambda: self.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0,
            what="kube-apiserver /readyz",
            timeout=90,
            interval=0.5,
            watch=[etcd, apiserver],
        )
        # Controllers act as their own service accounts (replicaset-controller, ...), as in a
        # real cluster: Dapr's injector only mutates pods created by those.
        self._start(
            "kube-controller-manager",
            [str(BIN / "kube-controller-manager"), "--kubeconfig", kubeconfig,
             "--bind-address", "127.0.0.1", "--secure-port", str(p["controller-manager"]), "--leader-elect=false",
             "--use-service-account-credentials", "--service-account-private-key-file", str(pki / "sa.key"),
             "--root-ca-file", str(pki / "ca.crt"), "--cluster-signing-cert-file", str(pki / "ca.crt"),
             "--cluster-signing-key-file", str(pki / "ca.key"), "--cert-dir", str(self.workdir / "kcm-certs"),
             "--profiling=false"],
        )  # fmt: skip
        self._start(
            "kube-scheduler",
            [str(BIN / "kube-scheduler"), "--kubeconfig", kubeconfig, "--bind-address", "127.0.0.1",
             "--secure-port", str(p["scheduler"]), "--leader-elect=false", "--profiling=false"],
        )  # fmt: skip
        stages = sorted((K8S_RUNTIME / "kwok-stages").glob("*.yaml"))
        kwok = self._start(
            "kwok",
            [str(BIN / "kwok"), "--kubeconfig", kubeconfig, "--manage-all-nodes=false",
             "--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
             "--server-address", f"127.0.0.1:{p['kwok']}", "--cidr", POD_RANGE, "--node-ip", "10.0.1.1",
             *[arg for stage in stages if stage.name != "storage-class.yaml" for arg in ("--config", str(stage))]],
        )  # fmt: skip
        # kwok provisions volumes of this (default) class, so StatefulSets and PVCs bind.
        self.kubectl("apply", "-f", str(K8S_RUNTIME / "kwok-stages" / "storage-class.yaml"))
        self.kubectl("apply", "-f", "-", input=json.dumps(FAKE_NODE))
        wait_until(
            lambda: self._node_ready("kwok-node-0"),
            what="the kwok node Ready",
            timeout=60,
            interval=0.5,
            watch=[kwok, apiserver],
        )
        # The namespace's default ServiceAccount appears once the controller-manager runs.
        wait_until(
            lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
            what="the default ServiceAccount",
            timeout=60,
            interval=0.5,
            watch=self.processes,
        )

    def _node_ready(self, name: str) -> bool:
        result = self.kubectl("get", "node", name, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _start_dapr(self) -> None:
        names = ["sentry", "sentry-health", "sentry-metrics", "injector", "injector-health", "injector-metrics"]
        names += ["operator", "operator-health", "operator-metrics", "operator-webhook"]
        self.ports.update(zip(names, free_ports(len(names)), strict=True))
        p = self.ports
        kubeconfig = str(self.kubeconfig)
        # Dapr's CRDs from the pinned Dapr module (charts/dapr/crds), as its Helm chart installs them.
        self.kubectl("apply", "--server-side", "-f", str(K8S_RUNTIME / "dapr-crds"))
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        self.kubectl("apply", "-f", "-", input=json.dumps(dapr_system_objects(p["injector"], p["sentry"])))

        # In Kubernetes mode sentry keeps its issuer in the dapr-trust-bundle Secret, but it
        # watches this folder all the same and exits if it is missing.
        (self.workdir / "sentry-credentials").mkdir()
        sentry = self._start(
            "sentry",
            self._in_private_hosts(
                [str(SENTRY), "--mode", "kubernetes", "--kubeconfig", kubeconfig, "--trust-domain", TRUST_DOMAIN,
                 "--issuer-credentials", str(self.workdir / "sentry-credentials"),
                 "--port", str(p["sentry"]), "--listen-address", "127.0.0.1",
                 "--healthz-port", str(p["sentry-health"]), "--healthz-listen-address", "127.0.0.1",
                 "--metrics-port", str(p["sentry-metrics"]), "--metrics-listen-address", "127.0.0.1"]
            ),
            # The tests run as root; the real pods do not.
            env={"NAMESPACE": DAPR_NAMESPACE, "DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK": "true"},
        )  # fmt: skip
        anchors = self.workdir / "trust-anchors.pem"

        def trust_bundle() -> bool:
            data = self.get_json("configmap", "dapr-trust-bundle", "-n", DAPR_NAMESPACE).get("data") or {}
            if not data.get("ca.crt"):
                return False
            anchors.write_text(data["ca.crt"])
            return True

        wait_until(trust_bundle, what="sentry's trust bundle", timeout=60, interval=0.5, watch=[sentry])

        common = {
            "NAMESPACE": DAPR_NAMESPACE,
            "DAPR_SENTRY_ADDRESS": f"127.0.0.1:{p['sentry']}",
            "DAPR_TRUST_ANCHORS_FILE": str(anchors),
            "DAPR_CONTROL_PLANE_TRUST_DOMAIN": TRUST_DOMAIN,
            # The tests run as root; the real pods do not.
            "DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK": "true",
        }
        injector = self._start(
            "injector",
            [str(BIN / "injector"), "--kubeconfig", kubeconfig, "--port", str(p["injector"]),
             "--listen-address", "127.0.0.1", "--healthz-port", str(p["injector-health"]),
             "--healthz-listen-address", "127.0.0.1", "--metrics-port", str(p["injector-metrics"]),
             "--metrics-listen-address", "127.0.0.1"],
            env={
                **common,
                "DAPR_SENTRY_TOKEN_FILE": str(self._control_plane_token("injector")),
                "SIDECAR_IMAGE": SIDECAR_IMAGE,
                "KUBE_CLUSTER_DOMAIN": "cluster.local",
                # What k8s/README.md tells the Helm chart: the sidecar meets Pod Security "restricted".
                "SIDECAR_RUN_AS_NON_ROOT": "true",
                "SIDECAR_READ_ONLY_ROOT_FILESYSTEM": "true",
                "SIDECAR_DROP_ALL_CAPABILITIES": "true",
            },
        )  # fmt: skip
        operator = self._start(
            "operator",
            [str(BIN / "operator"), "--kubeconfig", kubeconfig, "--port", str(p["operator"]),
             "--listen-address", "127.0.0.1", "--healthz-port", str(p["operator-health"]),
             "--healthz-listen-address", "127.0.0.1", "--metrics-port", str(p["operator-metrics"]),
             "--metrics-listen-address", "127.0.0.1", "--webhook-server-port", str(p["operator-webhook"]),
             "--webhook-server-listen-address", "127.0.0.1", "--disable-leader-election",
             "--watch-interval", "0", "--trust-anchors-file", str(anchors)],
            # The Subscription conversion webhook needs a Service in front of it; not tested here.
            env={**common, "DAPR_SENTRY_TOKEN_FILE": str(self._control_plane_token("operator")),
                 "ENABLE_WEBHOOKS": "false"},
        )  # fmt: skip

        def webhook_ready() -> bool:
            hook = self.get_json("mutatingwebhookconfiguration", "dapr-sidecar-injector")
            return bool(hook["webhooks"][0]["clientConfig"].get("caBundle"))

        for name, process in (("injector", injector), ("operator", operator), ("sentry", sentry)):
            url = f"http://127.0.0.1:{p[name + '-health']}/healthz"
            wait_until(
                lambda url=url: httpx.get(url, timeout=2).status_code == 200,
                what=f"{name} /healthz",
                timeout=90,
                interval=0.5,
                watch=[process],
            )
        wait_until(webhook_ready, what="the injector's caBundle", timeout=60, interval=0.5, watch=[injector])

    def _control_plane_token(self, service: str) -> Path:
        """Sentry signs a control-plane certificate only for a live pod of that service (a pod
        annotated dapr.io/control-plane, with its ServiceAccount) presenting a token bound to
        it. The process runs here, so a stand-in pod (kwok runs it) carries the identity."""
        pod = f"dapr-{service}-standin"
        self.kubectl("apply", "-f", "-", input=json.dumps(standin_pod(pod, service)))
        token = self.kubectl(
            "create", "token", f"dapr-{service}", "-n", DAPR_NAMESPACE, "--audience", "dapr.io/sentry",
            "--bound-object-kind", "Pod", "--bound-object-name", pod, "--duration", "2h",
        ).stdout.strip()  # fmt: skip
        path = self.workdir / f"{service}.token"
        path.write_text(token)
        return path


FAKE_NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "kwok-node-0",
        "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        "labels": {
            "kubernetes.io/hostname": "kwok-node-0",
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": "zone-a",
            "type": "kwok",
        },
    },
    "status": {
        "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "250"},
        "capacity": {"cpu": "64", "memory": "256Gi", "pods": "250"},
    },
}


def standin_pod(name: str, service: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": DAPR_NAMESPACE,
            "annotations": {"dapr.io/control-plane": service},
        },
        "spec": {
            "serviceAccountName": f"dapr-{service}",
            "containers": [{"name": service, "image": f"ghcr.io/dapr/{service}:1.18.2"}],
        },
    }


def dapr_system_objects(injector_port: int, sentry_port: int) -> dict:
    """What Dapr's Helm chart creates before its control plane starts, as far as it runs here."""
    items: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DAPR_NAMESPACE}}]
    for service in ("sentry", "injector", "operator"):
        account = {"name": f"dapr-{service}", "namespace": DAPR_NAMESPACE}
        items.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": account})
    # sentry fills both with the trust bundle it creates at first start.
    meta = {"name": "dapr-trust-bundle", "namespace": DAPR_NAMESPACE}
    items += [
        {"apiVersion": "v1", "kind": "Secret", "metadata": meta},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta},
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Configuration",
            "metadata": {"name": "daprsystem", "namespace": DAPR_NAMESPACE},
            "spec": {
                "mtls": {
                    "enabled": True,
                    "workloadCertTTL": "24h",
                    "allowedClockSkew": "15m",
                    "controlPlaneTrustDomain": TRUST_DOMAIN,
                    # The operator dials this address (not DAPR_SENTRY_ADDRESS); the Service name
                    # Helm puts here would send a DNS query off the machine.
                    "sentryAddress": f"127.0.0.1:{sentry_port}",
                }
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "dapr-sidecar-injector"},
            "webhooks": [
                {
                    "name": "sidecar-injector.dapr.io",
                    "reinvocationPolicy": "IfNeeded",
                    # The injector patches in caBundle once sentry gave it a certificate.
                    "clientConfig": {"url": f"https://{INJECTOR_HOST}:{injector_port}/mutate"},
                    "rules": [
                        {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["CREATE"]}
                    ],
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 10,
                    # Dapr's own namespace stays out: its stand-in pods exist before the injector.
                    "namespaceSelector": {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/metadata.name",
                                "operator": "NotIn",
                                "values": [DAPR_NAMESPACE, "kube-system"],
                            }
                        ]
                    },
                }
            ],
        },
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}
