"""nginx in front of a hub, with TLS (a throwaway self-signed certificate), speaking HTTP/2
or HTTP/1.1 to the browser and HTTP/1.1 with keep-alive to the hub: the production
topology's reverse proxy, for benchmarks that must see what the browser's protocol costs.
A browser speaks HTTP/2 over TLS only, and over HTTP/1.1 opens at most 6 connections per
host: with HTTP/2 every tile of a view is in flight at once on one connection.

Needs Debian's nginx (`apt-get install nginx-light`) and the openssl command."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

CONFIG = """
daemon off;
worker_processes 1;
pid {home}/nginx.pid;
error_log {home}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {home}/body;
    proxy_temp_path {home}/proxy;
    fastcgi_temp_path {home}/fastcgi;
    uwsgi_temp_path {home}/uwsgi;
    scgi_temp_path {home}/scgi;
    upstream hub {{
        server 127.0.0.1:{hub_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} ssl{http2};
        ssl_certificate {home}/cert.pem;
        ssl_certificate_key {home}/key.pem;
        http2_max_concurrent_streams 256;
        location / {{
            proxy_pass http://hub;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_buffering off;
        }}
    }}
}}
"""


class TlsProxy:
    """`with TlsProxy(home, port, hub_port, http2=True) as proxy:` then proxy.base."""

    def __init__(self, home: Path, port: int, hub_port: int, *, http2: bool) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise RuntimeError("nginx is missing: apt-get install nginx-light")
        self.home, self.port, self.http2, self.nginx = home, port, http2, nginx
        self.base = f"https://127.0.0.1:{port}"
        self._proc: subprocess.Popen[bytes] | None = None
        config = CONFIG.format(
            home=home, port=port, hub_port=hub_port, http2=" http2" if http2 else ""
        )
        home.mkdir(parents=True, exist_ok=True)
        (home / "nginx.conf").write_text(config)

    def __enter__(self) -> TlsProxy:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-keyout", str(self.home / "key.pem"),
             "-out", str(self.home / "cert.pem")],
            check=True, capture_output=True,
        )  # fmt: skip
        self._proc = subprocess.Popen(
            [self.nginx, "-p", str(self.home), "-c", str(self.home / "nginx.conf")]
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = (self.home / "error.log").read_text(errors="replace")
                raise RuntimeError(f"nginx exited: {log[-2000:]}")
            try:
                httpx.get(f"{self.base}/api/health", verify=False, timeout=2)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("nginx did not answer")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
