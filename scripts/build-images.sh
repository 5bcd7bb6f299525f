#!/usr/bin/env bash
# Builds the apps' container images from the one Dockerfile, with podman:
#   scripts/build-images.sh                 the light apps (every app without torch)
#   scripts/build-images.sh inference ...   the named apps (the model apps are ~6 GB each: the
#                                           torch wheel uv.lock pins from PyPI bundles CUDA)
# Images are tagged genai-platform/<app>:<version of apps/<app>/pyproject.toml>, as k8s/ expects.
#
# No image registry is reachable here, so the base image is made locally: a Debian bookworm
# root filesystem from Debian's own packages (debootstrap: python3 and its venv module), imported
# into podman once as localhost/genai-platform/python-base:bookworm. Elsewhere, build with the
# Dockerfile's default base (the public python image) and no build arg at all.
#
# podman runs here only with runc, cgroupfs and explicit ulimits (../shared/k8s-local-cluster.md):
# this script writes that containers.conf under .runtime/podman and points CONTAINERS_CONF at it,
# leaving /etc/containers alone. Builds use the host network (no bridge, no non-loopback address).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/podman-env.sh
source "$root/scripts/podman-env.sh"

light_apps=(gateway ingestion registry prompts guard ui monitor)
apps=("$@")
[[ ${#apps[@]} -gt 0 ]] || apps=("${light_apps[@]}")

# Tools from Debian's packages.
missing=()
for tool in podman:podman runc:runc debootstrap:debootstrap; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "images: apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
fi

if ! podman image exists "$GENAI_BASE_IMAGE"; then
  echo "images: making $GENAI_BASE_IMAGE from Debian bookworm packages (debootstrap, about 3 minutes)..."
  start=$SECONDS
  work="$(mktemp -d "$root/.runtime/podman/rootfs.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  # minbase: essential packages only; python3-venv gives the build stage `python3 -m venv`.
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$work/rootfs" http://deb.debian.org/debian >"$root/.runtime/podman/debootstrap.log" 2>&1 \
    || { tail -n 20 "$root/.runtime/podman/debootstrap.log" >&2; exit 1; }
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  tar -C "$work/rootfs" -c . | podman import --quiet \
    --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$GENAI_BASE_IMAGE" >/dev/null
  rm -rf "$work"
  trap - EXIT
  echo "images: base image made in $((SECONDS - start)) s"
fi

# Browser libraries that scripts/ui-assets.sh copies from npm (git-ignored): the ui's, and Swagger UI,
# which every app's /docs serves (the platform library's wheel carries it).
bash "$root/scripts/ui-assets.sh" >/dev/null

# The machine's CA bundle, for a TLS-inspecting proxy between the build and PyPI (Dockerfile).
secret=()
ca="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
[[ -f "$ca" ]] && secret=(--secret "id=cacert,src=$ca")

for app in "${apps[@]}"; do
  [[ -f "$root/apps/$app/pyproject.toml" ]] || { echo "images: no app named $app" >&2; exit 1; }
  version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/apps/$app/pyproject.toml" | head -n1)"
  image="genai-platform/$app:$version"
  echo "images: building $image..."
  start=$SECONDS
  log="$root/.runtime/podman/build-$app.log"
  if ! podman build --network host --layers --build-arg "BASE=$GENAI_BASE_IMAGE" --build-arg "APP=$app" \
      "${secret[@]}" -t "$image" -f "$root/Dockerfile" "$root" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "images: building $image failed; full log in $log" >&2
    exit 1
  fi
  echo "images: $image built in $((SECONDS - start)) s ($(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=iec))"
done

# Each rebuild leaves the previous image untagged; drop those (tagged images and layers stay).
podman image prune --force >/dev/null
