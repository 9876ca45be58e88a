"""What a sandboxed parser child can reach (tiles.isolation): run in a fresh Python whose
environment holds the hub's secrets, as a hub started with them would, so that its
forkserver (the parent of every parser child) has them too."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.testdata import REPO, sample

SECRETS = {
    "IAIN_SECRET_KEY": "hub-signing-secret-3f9a",
    "IAIN_S3_SECRET_KEY": "s3-secret-77c1",
    "IAIN_OIDC_CLIENT_SECRET": "oidc-secret-0b2e",
    "IAIN_DATABASE_URL": "postgresql://iain:db-password-91d4@db:5432/iain",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-5e60",
    "PGPASSWORD": "db-password-91d4",
}

# Runs in the fresh Python: three looks from inside a confined child, then the real
# inspections of a sample on disk and of the same bytes read in place.
SCRIPT = """
import functools, json, sys
from pathlib import Path
from tiles import isolation, sandbox

port, path = int(sys.argv[1]), Path(sys.argv[2])
data = path.read_bytes()
on_disk = sandbox.inspect_in_sandbox(path)
in_place = sandbox.inspect_stored_in_sandbox(
    lambda offset, length: data[offset : offset + length],
    len(data), Path("/stored") / path.name, Path("/stored"),
)
print(json.dumps({
    "names": sandbox.run_confined(isolation.environment_names).splitlines(),
    "connect": sandbox.run_confined(
        functools.partial(isolation.connect_outcome, "127.0.0.1", port)),
    "parent_environ": sandbox.run_confined(isolation.parent_environ_outcome),
    "on_disk": [on_disk.properties.l_sizes[0].width, on_disk.properties.l_sizes[0].height],
    "in_place": [in_place.properties.l_sizes[0].width, in_place.properties.l_sizes[0].height],
    "metadata": json.dumps(on_disk.properties.vendor_metadata),
}))
"""


def user_namespaces_allowed() -> bool:
    """Whether this kernel gives an unprivileged process a user and a network namespace
    (asked of util-linux's unshare, independently of our code)."""
    done = subprocess.run(["unshare", "--user", "--net", "true"], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on this machine that accepts connections."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def run_hub_like(port: int, path: Path) -> dict[str, Any]:
    env = {**os.environ, **SECRETS}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(port), str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_a_parser_child_sees_no_secret_of_the_hub_and_still_inspects(listener: int) -> None:
    path = sample("aperio/CMU-1-Small-Region.svs")
    report = run_hub_like(listener, path)
    names = set(report["names"])
    assert names.isdisjoint(SECRETS)
    assert not any(n.startswith("IAIN_") for n in names)
    assert "PATH" in names  # what it needs to run stays
    # The slide is read as it would be without the confinement, on disk and in place.
    assert report["on_disk"] == report["in_place"] == [2220, 2967]
    assert not any(value in report["metadata"] for value in SECRETS.values())
    # This process (not confined) reaches the listener, and may read its parent's secrets.
    with socket.create_connection(("127.0.0.1", listener), timeout=2):
        pass
    if user_namespaces_allowed():
        assert report["connect"].startswith("refused"), report["connect"]
        assert report["parent_environ"].startswith("refused"), report["parent_environ"]
    else:  # the kernel refuses namespaces: the child runs on, with the network
        assert report["connect"] == "connected"
