"""Which environment variables a sandboxed child loses (tiles.isolation.scrub_environment)."""

from __future__ import annotations

from tiles.isolation import scrub_environment

HUB_ENVIRONMENT = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/iain",
    "TMPDIR": "/var/tmp",
    "LANG": "C.UTF-8",
    "LD_LIBRARY_PATH": "/opt/openslide/lib",
    "PYTHONPATH": "/srv/iain",
    "VIPS_CONCURRENCY": "2",
    "IAIN_SECRET_KEY": "hub-signing-secret",
    "IAIN_S3_SECRET_KEY": "s3-secret",
    "IAIN_S3_ACCESS_KEY": "s3-access",
    "IAIN_OIDC_CLIENT_SECRET": "oidc-secret",
    "IAIN_DATABASE_URL": "postgresql://iain:db-password@db:5432/iain",
    "IAIN_STORAGE_URL": "s3://minio:9000/slides",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "PGPASSWORD": "db-password",
    "GITHUB_TOKEN": "ghp_x",
    "SSH_AUTH_SOCK": "/run/user/1000/ssh-agent",
    "DATABASE_URL": "postgresql://iain:db-password@db/iain",
    "HTTPS_PROXY": "http://user:proxy-password@proxy:3128",
    "NO_PROXY": "localhost",
}


def test_a_child_keeps_what_it_runs_with_and_loses_every_secret() -> None:
    env = dict(HUB_ENVIRONMENT)
    removed = scrub_environment(env)
    kept = {"PATH", "HOME", "TMPDIR", "LANG", "LD_LIBRARY_PATH", "PYTHONPATH", "VIPS_CONCURRENCY"}
    assert set(env) == kept | {"NO_PROXY"}
    assert removed == sorted(set(HUB_ENVIRONMENT) - set(env))
    # No value of a secret survives anywhere in what the child keeps.
    for secret in ("secret", "password", "ghp_", "ssh-agent", "s3-access"):
        assert not any(secret in value for value in env.values())


def test_the_conversion_worker_may_keep_its_proxy() -> None:
    env = dict(HUB_ENVIRONMENT)
    scrub_environment(env, keep=["HTTPS_PROXY", "NO_PROXY"])
    assert env["HTTPS_PROXY"] == HUB_ENVIRONMENT["HTTPS_PROXY"]
    assert "IAIN_SECRET_KEY" not in env and "PGPASSWORD" not in env
