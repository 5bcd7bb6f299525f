# Sourced by scripts/build-images.sh and read by tests/containers: the podman settings that work
# in this sandbox (../shared/k8s-local-cluster.md), kept in a containers.conf of the project's
# own under .runtime/podman rather than in /etc/containers.
#   runc: Debian's default crun fails on this machine's cgroup hybrid mode and rlimits.
#   cgroupfs: no systemd to manage cgroups.  ulimits: a higher nproc fails here.
_podman_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.runtime/podman"
mkdir -p "$_podman_root"
cat >"$_podman_root/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "host"
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$_podman_root/containers.conf"
export GENAI_BASE_IMAGE="localhost/genai-platform/python-base:bookworm"
unset _podman_root
