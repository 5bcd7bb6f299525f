"""A test's sidecar registers in its session's name-resolution file, not in `make up`'s.

The unit side (the config the harness writes): tests/unit/test_sidecar_names.py.
"""

from __future__ import annotations

from pathlib import Path

from harness import NAMES_FILE, RESILIENCY_DIR, ROOT, Daprd, registered_sidecars, session_config, wait_until

PLATFORM_NAMES = ROOT / ".data" / "nameresolution.db"


def test_a_test_sidecar_is_found_in_the_sessions_file_only(log_dir: Path) -> None:
    sidecar = Daprd(app_id="names-probe", resources=[RESILIENCY_DIR], log_dir=log_dir, mtls=False).start()
    try:
        sidecar.wait_ready(60)
        ours = ("names-probe", f"127.0.0.1:{sidecar.internal_grpc_port}")
        names = session_config().parent / NAMES_FILE
        wait_until(lambda: ours in registered_sidecars(names), what="the probe's registration", timeout=10)
        if PLATFORM_NAMES.exists():
            assert ours not in registered_sidecars(PLATFORM_NAMES)
            assert all(app_id != "names-probe" for app_id, _ in registered_sidecars(PLATFORM_NAMES))
    finally:
        assert sidecar.process is not None
        sidecar.process.stop()
