#!/usr/bin/env bash
# Builds a real Kubernetes control plane and Dapr's Kubernetes control plane from Go modules, for
# the k8s tests (tests/k8s) and anyone who wants a local API server:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl   (tools/k8s)
#   kwok: fake nodes and pod status, so pods run without a kubelet          (tools/k8s)
#   Dapr's sidecar injector and operator                                    (tools/dapr-control-plane)
#   actionlint, which checks the GitHub Actions workflow                    (tools/actionlint)
# Dapr's sentry is the one scripts/build-dapr.sh already builds from the same Dapr release.
# Everything lands in .runtime/k8s/, with the files the tests need from the modules (Dapr's CRDs,
# kwok's stages), so the tests need no Go. A second run with everything built is a no-op.
# Cold, on 2 busy cores: about 40 minutes (kube-apiserver alone about 23); see README.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
k8s_module="$root/tools/k8s"
dapr_module="$root/tools/dapr-control-plane"
lint_module="$root/tools/actionlint"
out="${K8S_RUNTIME_PATH:-$root/.runtime/k8s}"
bin="$out/bin"
mkdir -p "$bin"

# A stamp ties the binaries to the pinned versions: changing a go.mod or go.sum (or this script)
# rebuilds what changed.
stamp="$out/.built-$(cat "$k8s_module"/go.{mod,sum} "$dapr_module"/go.{mod,sum} \
  "$lint_module"/go.{mod,sum} "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]]; then
  echo "k8s: control plane, kwok, Dapr injector/operator and actionlint already built in $out"
  exit 0
fi

version_of() { go -C "$1" list -m -f '{{.Version}}' "$2"; }
dir_of() { go -C "$1" list -m -f '{{.Dir}}' "$2"; }

echo "k8s: downloading modules (about 300 MB the first time)..."
(cd "$k8s_module" && go mod download) && (cd "$dapr_module" && go mod download) \
  && (cd "$lint_module" && go mod download)

kube_version="$(version_of "$k8s_module" k8s.io/kubernetes)"     # v1.37.2
kube_minor="${kube_version#v*.}"; kube_minor="${kube_minor%%.*}"
kube_major="${kube_version#v}"; kube_major="${kube_major%%.*}"
kube_time="$(go -C "$k8s_module" list -m -f '{{.Time}}' k8s.io/kubernetes)"   # the tag's time
kube_date="$(date -u -d "${kube_time% UTC}" +%Y-%m-%dT%H:%M:%SZ)"
etcd_version="$(version_of "$k8s_module" go.etcd.io/etcd/server/v3)"
kwok_version="$(version_of "$k8s_module" sigs.k8s.io/kwok)"
dapr_version="$(version_of "$dapr_module" github.com/dapr/dapr)"
lint_version="$(version_of "$lint_module" github.com/rhysd/actionlint)"

# Without the stamp the API server reports v0.0.0-master and `kubectl version` refuses it.
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$kube_major"
  kube_ldflags+=" -X $pkg.gitMinor=$kube_minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=$kube_date"
done

export CGO_ENABLED=0

# build NAME MODULE_DIR PACKAGE LDFLAGS NOTE: skipped when the binary is newer than its go.sum.
build() {
  local name="$1" module="$2" pkg="$3" ldflags="$4" note="$5"
  if [[ -x "$bin/$name" && "$bin/$name" -nt "$module/go.sum" ]]; then
    echo "k8s: $name is up to date"
    return
  fi
  echo "k8s: building $name${note:+ ($note)}..."
  local start=$SECONDS log="$out/build-$name.log"
  # -v names each package as it compiles: every 100th is shown as progress.
  if ! (cd "$module" && go build -v -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg") 2>&1 \
      | tee "$log" \
      | awk -v n="$name" '{ c++; if (c % 100 == 0) { printf "k8s:   %s: %d packages compiled (%s)\n", n, c, $0; fflush() } }'; then
    tail -n 30 "$log" >&2
    echo "k8s: building $name failed; full log in $log" >&2
    exit 1
  fi
  if [[ ! -x "$bin/$name.tmp" ]]; then
    tail -n 30 "$log" >&2
    echo "k8s: building $name failed; full log in $log" >&2
    exit 1
  fi
  mv "$bin/$name.tmp" "$bin/$name"
  echo "k8s: $name built in $((SECONDS - start)) s"
}

# Cheapest and most useful first: kubectl alone renders and checks the manifests.
build kubectl "$k8s_module" k8s.io/kubernetes/cmd/kubectl "$kube_ldflags" "about 6 minutes cold"
build actionlint "$lint_module" github.com/rhysd/actionlint/cmd/actionlint \
  "-s -w -X github.com/rhysd/actionlint.version=${lint_version#v}" ""
build etcd "$k8s_module" go.etcd.io/etcd/server/v3 \
  "-s -w" ""
build kwok "$k8s_module" sigs.k8s.io/kwok/cmd/kwok \
  "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${kwok_version#v}" ""
dapr_ldflags="-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=${dapr_version#v} -X github.com/dapr/kit/logger.DaprVersion=${dapr_version#v}"
build injector "$dapr_module" github.com/dapr/dapr/cmd/injector "$dapr_ldflags" ""
build operator "$dapr_module" github.com/dapr/dapr/cmd/operator "$dapr_ldflags" ""
build kube-scheduler "$k8s_module" k8s.io/kubernetes/cmd/kube-scheduler "$kube_ldflags" ""
build kube-controller-manager "$k8s_module" k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags" ""
build kube-apiserver "$k8s_module" k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags" \
  "the longest: about 23 minutes cold"

# What the tests read from the modules: Dapr's CRDs and kwok's stage configurations.
rm -rf "$out/dapr-crds" "$out/kwok-stages"
mkdir -p "$out/dapr-crds" "$out/kwok-stages"
cp "$(dir_of "$dapr_module" github.com/dapr/dapr)"/charts/dapr/crds/*.yaml "$out/dapr-crds/"
kwok_dir="$(dir_of "$k8s_module" sigs.k8s.io/kwok)"
# Nodes and pods, and volumes: its default StorageClass and the stages that bind its claims.
for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
    pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete \
    volume/fast/storage-class volume/fast/pvc-provision volume/fast/pv-bind volume/fast/pv-delete \
    volume/fast/pvc-delete; do
  cp "$kwok_dir/kustomize/stage/$stage.yaml" "$out/kwok-stages/"
done
chmod -R u+w "$out/dapr-crds" "$out/kwok-stages"   # the module cache is read-only

cat > "$out/versions.env" <<EOF
KUBERNETES_VERSION=$kube_version
ETCD_VERSION=$etcd_version
KWOK_VERSION=$kwok_version
DAPR_VERSION=$dapr_version
ACTIONLINT_VERSION=$lint_version
EOF

rm -f "$out"/.built-*
touch "$stamp"
echo "k8s: done - $("$bin/kubectl" version --client | head -n1), etcd $etcd_version, kwok $kwok_version, Dapr $dapr_version injector/operator, actionlint $lint_version"
