"""`make push` as a user runs it, to a registry on loopback (the CNCF distribution registry, Debian's
docker-registry): the image arrives whole, and what a cluster would pull is what was built."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from glassbox.local import free_port
from glassbox_testing.cluster import REPO

from .conftest import require_image, tag


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    with open(tmp_path / "registry.log", "wb") as log:
        process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "registry.log").read_text()
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


def test_make_push_copies_the_operator_image_to_a_registry(registry: str) -> None:
    image = require_image(tag("operator"))
    pushed = subprocess.run(
        ["env", "TLS_VERIFY=false", "make", "-s", "push", f"REGISTRY={registry}/team", "IMAGES=operator"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    remote = f"{registry}/team/glassbox-operator:{image.rsplit(':', 1)[1]}"
    assert f"pushed {remote}" in pushed.stdout and f"--set image.repository={registry}/team/glassbox-operator" in pushed.stdout
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{remote}"], capture_output=True, text=True, check=True
    )
    local = subprocess.run(["podman", "image", "inspect", image], capture_output=True, text=True, check=True)
    pushed_config, local_config = json.loads(inspected.stdout), json.loads(local.stdout)[0]
    assert pushed_config["rootfs"]["diff_ids"] == local_config["RootFS"]["Layers"], (
        "the registry holds other layers than were built"
    )
    assert pushed_config["config"]["User"] == "65532:65532" and pushed_config["config"]["Entrypoint"] == ["glassbox"]
