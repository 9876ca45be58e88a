"""Model artefacts on a worker: fetched once, kept by SHA-256, loaded only after the digest
matches the registry's. TorchScript programs load with torch.jit.load, torch.export
programs with torch.export.load; nothing is ever read with a plain unpickler."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from inference.protocol import JobFailure, ModelSpec

_LOCK = threading.Lock()


def cached_artefact(spec: ModelSpec, cache_dir: Path, fetch: Callable[[], bytes]) -> Path:
    """The artefact's local file, fetched if this worker has no good copy; JobFailure if
    what the hub sent is not what the registry recorded."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    # torch.export.load wants the .pt2 suffix; TorchScript's is .pt.
    suffix = "pt2" if spec.artefact_format == "export" else "pt"
    path = cache_dir / f"{spec.sha256}.{suffix}"
    with _LOCK:
        if path.exists() and _sha256(path) == spec.sha256:
            return path
        data = fetch()
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec.sha256:
            raise JobFailure(
                f"the model artefact's SHA-256 is {digest}, the registry says {spec.sha256}: "
                "refusing to load it"
            )
        handle, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".part")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
        return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(path: Path, spec: ModelSpec, device: torch.device) -> torch.nn.Module:
    """The program, on `device`, in eval mode; JobFailure with the loader's reason."""
    try:
        if spec.artefact_format == "torchscript":
            module: torch.nn.Module = torch.jit.load(  # type: ignore[no-untyped-call]
                str(path), map_location=device
            )
        elif spec.artefact_format == "export":
            module = torch.export.load(str(path)).module().to(device)
        else:
            raise JobFailure(f"unknown artefact format {spec.artefact_format!r}")
    except JobFailure:
        raise
    except Exception as exc:
        raise JobFailure(
            f"the model artefact cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None
    if isinstance(module, torch.jit.ScriptModule):
        module.eval()
    # An exported program runs as it was exported (export it in eval mode): it has no
    # train/eval switch of its own.
    return module
