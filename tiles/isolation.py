"""What a child process that handles untrusted slide bytes gives up before it starts.

The sandboxed parser (tiles.sandbox) and the conversion worker (exchange.slides.conversion) fork
from a forkserver that inherited the hub's environment: the hub's secret key, the storage
and OIDC secrets, the database URL with its password. A parser exploit could read them
from os.environ, or from /proc/<parent>/environ and /proc/<parent>/mem (same user), and
send them out over the network or hide them in the answer the uploader sees. So, first
thing in the child:

- scrub_environment(): every IAIN_* variable, every variable whose name says it holds a
  secret, and every URL with a password in it leave os.environ (what the child needs to
  run, PATH, HOME, TMPDIR, LD_*, PYTHON*, VIPS_*, stays);
- a new user namespace (where the kernel allows unprivileged ones): the child can no
  longer read or trace its parents' /proc files (environ, mem), although it keeps its own
  user id on files;
- for the parser only, a new network namespace in the same step: no interface but a
  loopback that is down, so no connection anywhere (it reads bytes from its pipe or from
  local files, never from the network).

Not isolated: the file system (the child reads and writes whatever the hub's user may),
and what the parent hands the child as arguments (the conversion worker gets the store's
credentials to write the pyramid). The namespaces are best effort: where the kernel refuses
them, the child runs without and says so in a debug log."""

from __future__ import annotations

import ctypes
import logging
import os
import re
import socket
from collections.abc import Iterable, MutableMapping

log = logging.getLogger(__name__)

# Names a child may keep whatever they contain: how to run programs and find libraries.
_ALWAYS_KEPT = frozenset({"PATH", "HOME", "TMPDIR", "TMP", "TEMP", "LANG", "LANGUAGE", "TZ"})
_KEPT_PREFIXES = ("LC_", "LD_", "PYTHON", "VIPS_")
# A name with one of these words holds a secret (AWS_SECRET_ACCESS_KEY, PGPASSWORD,
# SSH_AUTH_SOCK...).
_SECRET_WORDS = ("SECRET", "PASSWORD", "PASSWD", "TOKEN", "KEY", "CREDENTIAL", "AUTH", "COOKIE")
# scheme://user:password@host: a database or proxy URL with its password.
_URL_WITH_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]*:[^/@\s]*@")

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


def is_secret(name: str, value: str) -> bool:
    """Whether a child must not see this environment variable."""
    upper = name.upper()
    if upper in _ALWAYS_KEPT or upper.startswith(_KEPT_PREFIXES):
        return False
    return (
        upper.startswith("IAIN_")
        or any(word in upper for word in _SECRET_WORDS)
        or _URL_WITH_PASSWORD.search(value) is not None
    )


def scrub_environment(
    environ: MutableMapping[str, str] | None = None, keep: Iterable[str] = ()
) -> list[str]:
    """Removes the secrets (is_secret) from `environ` (os.environ by default) but the names
    in `keep`; returns the names removed, sorted."""
    env = os.environ if environ is None else environ
    kept = set(keep)
    removed = sorted(n for n, v in env.items() if n not in kept and is_secret(n, v))
    for name in removed:
        del env[name]  # os.environ also unsets it for C libraries
    return removed


def _unshare(flags: int) -> bool:
    """A new user namespace (plus `flags`) for this process, our uid and gid mapped to
    themselves in it; False where the kernel refuses (no unprivileged user namespaces, a
    seccomp filter, a threaded process)."""
    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWUSER | flags) != 0:
        log.debug("no user namespace for this child: %s", os.strerror(ctypes.get_errno()))
        return False
    try:  # files keep showing our own ids (unmapped ones read as nobody)
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError as exc:
        log.debug("ids not mapped in the child's user namespace: %s", exc)
    return True


def confine_parser() -> bool:
    """For a child that parses untrusted bytes it gets from its pipe or local files: no
    secrets in its environment, no access to its parents' /proc files, no network. Call it
    first thing, before any thread starts. True when the namespaces were made."""
    scrub_environment()
    return _unshare(_CLONE_NEWNET)


def confine_converter() -> bool:
    """For the conversion worker, which needs the network to reach storage: no secrets in
    its environment (its store comes with its own credentials, as an argument), no access
    to its parents' /proc files. Call it first thing. True when the namespace was made."""
    # A proxy may be how storage is reached, even when its URL carries a password.
    scrub_environment(keep=(n for n in os.environ if n.upper().endswith("_PROXY")))
    return _unshare(0)


# --- What tests look at from inside a confined child --------------------------------------


def environment_names() -> str:
    """The names in this process's environment, one a line."""
    return "\n".join(sorted(os.environ))


def connect_outcome(host: str, port: int) -> str:
    """`connected`, or the error a TCP connection to host:port gets within 2 s."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return "connected"
    except OSError as exc:
        return f"refused: {exc}"


def parent_environ_outcome() -> str:
    """`readable`, or the error that reading the parent's /proc environ (its secrets) gets."""
    try:
        with open(f"/proc/{os.getppid()}/environ", "rb") as f:
            f.read()
        return "readable"
    except OSError as exc:
        return f"refused: {exc}"
