"""What bench/inference_cpu.py and bench/inference_gpu.py share: standard architectures
written here (ResNet-18, ResNet-50, ViT-B/16 and a small CNN; random weights from a fixed
seed, nothing downloaded), their manifests, a hub in its own process with a slide ingested,
and a worker run in this process with the figures a benchmark needs:

- model only: the Runner (normalisation, bf16 autocast and channels-last on CUDA, as a job
  runs) over uint8 windows already in memory;
- a job: `Worker` in burst mode against the hub over HTTP, timed from the job's creation to
  its completion, with the inference loop's own window (the TileReader lives exactly as
  long as it) measured from inside: wall time, this process's CPU, the hub's and the
  storage server's CPU, and each tile's fetch (HTTP) and decode time, wall and CPU.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import inference.worker as worker_module  # noqa: E402
from exchange.core.db import Database  # noqa: E402
from exchange.identity.accounts import Identities  # noqa: E402
from exchange.jobs.manifest import check_manifest  # noqa: E402
from iain.settings import Settings  # noqa: E402
from inference.hub_client import HubClient  # noqa: E402
from inference.pipeline import (  # noqa: E402
    THUMBNAIL_SIZE,
    Plan,
    Pyramid,
    Runner,
    TileReader,
    plan_patches,
    tissue_of,
)
from inference.protocol import Claim, ModelSpec, Region, SlideSpec  # noqa: E402
from inference.worker import Worker, WorkerConfig  # noqa: E402

PY = sys.executable

# -- architectures ------------------------------------------------------------------------


def _bn_conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout)
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * self.expansion
        self.body = nn.Sequential(
            _bn_conv(cin, width, 3, stride), nn.ReLU(inplace=True), _bn_conv(width, out, 3)
        )
        self.skip: nn.Module = (
            _bn_conv(cin, out, 1, stride) if stride != 1 or cin != out else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class Bottleneck(nn.Module):
    """ResNet v1.5: the stride on the 3x3 convolution."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * self.expansion
        self.body = nn.Sequential(
            _bn_conv(cin, width, 1),
            nn.ReLU(inplace=True),
            _bn_conv(width, width, 3, stride),
            nn.ReLU(inplace=True),
            _bn_conv(width, out, 1),
        )
        self.skip: nn.Module = (
            _bn_conv(cin, out, 1, stride) if stride != 1 or cin != out else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class ResNet(nn.Module):
    def __init__(
        self, block: type[BasicBlock] | type[Bottleneck], depths: list[int], classes: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            _bn_conv(3, 64, 7, 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        ]
        cin = 64
        for stage, depth in enumerate(depths):
            width = 64 * 2**stage
            for i in range(depth):
                layers.append(block(cin, width, 2 if i == 0 and stage > 0 else 1))
                cin = width * block.expansion
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))
        return logits


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: multi-head self-attention, then an MLP (GELU)."""

    def __init__(self, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attended.transpose(1, 2).reshape(n, t, d))
        mlp: torch.Tensor = self.mlp(self.norm2(x))
        return x + mlp


class VisionTransformer(nn.Module):
    def __init__(
        self,
        classes: int,
        *,
        image: int = 224,
        patch: int = 16,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp: int = 3072,
    ) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads, mlp) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        logits: torch.Tensor = self.head(self.norm(self.blocks(tokens))[:, 0])
        return logits


class SmallCNN(nn.Module):
    """A cheap patch classifier (~0.1 GFLOP at 224 px): four stride-2 convolutions."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout in (16, 32, 64, 128):
            layers += [_bn_conv(cin, cout, 3, 2), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))
        return logits


ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {
    "resnet18": lambda classes: ResNet(BasicBlock, [2, 2, 2, 2], classes),
    "resnet50": lambda classes: ResNet(Bottleneck, [3, 4, 6, 3], classes),
    "vit_b16": lambda classes: VisionTransformer(classes),
    "small_cnn": lambda classes: SmallCNN(classes),
}


def build(name: str, classes: int = 2, seed: int = 0) -> nn.Module:
    """The architecture with random weights (the same for a seed), in eval mode."""
    torch.manual_seed(seed)
    return ARCHITECTURES[name](classes).eval()


def torchscript_bytes(module: nn.Module) -> bytes:
    """The module as a TorchScript artefact, as an AI engineer registers one."""
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module.eval()), buffer)
    return buffer.getvalue()


def load_torchscript(artefact: bytes, device: torch.device) -> nn.Module:
    """The artefact loaded as the worker loads it (inference.artefacts.load_model)."""
    module: nn.Module = torch.jit.load(  # type: ignore[no-untyped-call]
        io.BytesIO(artefact), map_location=device
    )
    return module.eval()


def manifest(
    name: str, *, resolution: float, patch_size: int = 224, batch_size: int = 32
) -> dict[str, Any]:
    return {
        "name": name,
        "version": "1.0.0",
        "task": "patch_classification",
        "resolution": resolution,
        "patch_size": patch_size,
        "classes": [
            {"name": "other", "colour": "#f0a0c0"},
            {"name": "tumour", "colour": "#6a1b9a"},
        ],
        "heatmap_class": "tumour",
        "licence": "Apache-2.0",
        "intended_use": "research use only",
        "authors": ["IAIN benchmarks"],
        "description": "random weights: a benchmark of throughput, not of accuracy",
        "batch_size": batch_size,
    }


def spec_of(document: dict[str, Any], artefact: bytes) -> ModelSpec:
    """The ModelSpec a claim would carry for this manifest (for runs without a hub)."""
    return ModelSpec.from_json(
        {
            "id": "local",
            "name": document["name"],
            "version": document["version"],
            "sha256": "",
            "artefact_format": "torchscript",
            "size_bytes": len(artefact),
            "url": "",
            # As the registry records it: every default spelled out.
            "manifest": check_manifest(document).model_dump(mode="json"),
        }
    )


# -- measuring ----------------------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}; "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def machine_cpu_s() -> float:
    """CPU time all processes of the machine have used (/proc/stat: all but idle and
    iowait), to tell a run disturbed by other work."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(v) for v in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """CPU time (user + system) of a process, from /proc (10 ms ticks)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(name: str) -> list[int]:
    """Pids of this process's children whose command is `name` (the S3 server's `weed`)."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, tail = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        if head.split("(", 1)[1] == name and int(tail.split()[1]) == me:
            found.append(int(entry.name))
    return found


@dataclass
class ModelOnly:
    patches: int
    seconds: float
    cpu_s: float  # this process's CPU over the run
    machine_cpu_s: float = 0.0  # every process's, this one included

    @property
    def others_cores(self) -> float:
        """Cores that other processes kept busy meanwhile (a disturbed run if high)."""
        return max(0.0, self.machine_cpu_s - self.cpu_s) / self.seconds

    @property
    def per_s(self) -> float:
        return self.patches / self.seconds

    @property
    def cpu_us_per_patch(self) -> float:
        return 1e6 * self.cpu_s / self.patches


def model_only(
    runner: Runner,
    window: int,
    batch: int,
    *,
    seconds: float,
    warmup: int = 5,
    min_batches: int = 3,
    sync: Callable[[], None] = lambda: None,
) -> ModelOnly:
    """The runner over uint8 windows already in memory (what the tile pipeline hands it),
    for about `seconds` after `warmup` batches."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (batch, window, window, 3), dtype=np.uint8)
    for _ in range(warmup):
        runner(pixels)
    sync()
    done = 0
    cpu, everything = time.process_time(), machine_cpu_s()
    start = time.perf_counter()
    while done < min_batches * batch or time.perf_counter() - start < seconds:
        runner(pixels)  # ends with the probabilities on the host: synchronised
        done += batch
    elapsed = time.perf_counter() - start
    return ModelOnly(done, elapsed, time.process_time() - cpu, machine_cpu_s() - everything)


@dataclass
class TileStats:
    """Per tile, summed over the reader's threads."""

    tiles: int = 0
    fetch_wall_s: float = 0.0  # HTTP GET, in the calling thread
    fetch_cpu_s: float = 0.0
    load_wall_s: float = 0.0  # fetch + decode (TileReader._load)
    load_cpu_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_fetch(self, wall: float, cpu: float) -> None:
        with self.lock:
            self.fetch_wall_s += wall
            self.fetch_cpu_s += cpu

    def add_load(self, wall: float, cpu: float) -> None:
        with self.lock:
            self.tiles += 1
            self.load_wall_s += wall
            self.load_cpu_s += cpu


@dataclass
class Window:
    """The inference loop of one job: from the TileReader's creation to its close."""

    wall_s: float = 0.0
    cpu_s: float = 0.0  # this (the worker's) process
    hub_cpu_s: float = 0.0
    storage_cpu_s: float = 0.0
    machine_cpu_s: float = 0.0  # every process's, these included
    read_s: float = 0.0  # TileReader.read_s
    fetched: int = 0  # TileReader.fetched


class TimedClient(HubClient):
    """The hub client, its tile GETs timed (wall and thread CPU), its completion kept."""

    def __init__(self, *args: Any, stats: TileStats, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.stats = stats
        self.provenance: dict[str, Any] = {}

    def tile(self, claim: Claim, capability: str, level: int, col: int, row: int) -> bytes:
        wall, cpu = time.perf_counter(), time.thread_time()
        data = super().tile(claim, capability, level, col, row)
        self.stats.add_fetch(time.perf_counter() - wall, time.thread_time() - cpu)
        return data

    def complete(
        self,
        claim: Claim,
        results: list[str],
        summary: dict[str, Any],
        provenance: dict[str, Any],
        manifest: dict[str, Any] | None = None,
    ) -> None:
        self.provenance = provenance
        super().complete(claim, results, summary, provenance, manifest)


@contextmanager
def measured_reader(
    stats: TileStats, window: Window, hub_pid: int, storage_pids: list[int]
) -> Iterator[None]:
    """The worker's TileReader replaced, for the block, by one that times each tile load
    and the window it lives in (the worker makes it just before its inference loop and
    closes it just after)."""

    def storage_cpu() -> float:
        return sum(proc_cpu_s(p) for p in storage_pids)

    class MeasuredReader(TileReader):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self._marks = (
                time.perf_counter(),
                time.process_time(),
                proc_cpu_s(hub_pid),
                storage_cpu(),
                machine_cpu_s(),
            )

        def _load(self, col: int, row: int) -> np.ndarray:
            wall, cpu = time.perf_counter(), time.thread_time()
            pixels = super()._load(col, row)
            stats.add_load(time.perf_counter() - wall, time.thread_time() - cpu)
            return pixels

        def close(self) -> None:
            wall, cpu, hub, storage, everything = self._marks
            window.wall_s = time.perf_counter() - wall
            window.cpu_s = time.process_time() - cpu
            window.hub_cpu_s = proc_cpu_s(hub_pid) - hub
            window.storage_cpu_s = storage_cpu() - storage
            window.machine_cpu_s = machine_cpu_s() - everything
            window.read_s, window.fetched = self.read_s, self.fetched
            super().close()

    # The name the worker's job loop looks up when it makes its reader.
    namespace = vars(worker_module)
    original = namespace["TileReader"]
    namespace["TileReader"] = MeasuredReader
    try:
        yield
    finally:
        namespace["TileReader"] = original


# -- the hub ------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Hub:
    base: str
    proc: subprocess.Popen[bytes]
    home: Path
    slides: dict[str, str]  # slide file name -> id
    user: str  # a pathologist's token: sees the slides, creates jobs
    engineer: str  # an AI engineer's token: registers models
    worker: str  # a worker-scoped token
    storage_pids: list[int] = field(default_factory=list)

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )


def _token(identities: Identities, username: str, roles: list[str], **kw: Any) -> str:
    if identities.user(username) is None:
        identities.add_user(username, "caen", roles)
    return identities.create_token(username, **kw)[1]


@contextmanager
def hub(
    home: Path,
    slides: list[Path],
    env: dict[str, str] | None = None,
    *,
    storage_pids: list[int] | None = None,
) -> Iterator[Hub]:
    """`iain serve` in its own process (its CPU is not this process's, nor its GIL), over
    IAIN_HOME=`home` and `env` (storage settings), with `slides` ingested by `iain ingest`."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "IAIN_HOME": str(home), **(env or {})}
    ids = {}
    for path in slides:
        started = time.perf_counter()
        done = subprocess.run(
            [PY, "-m", "iain.cli", "ingest", str(path)],
            env=full_env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ingest of {path} failed:\n{done.stdout}\n{done.stderr}")
        ids[path.name] = done.stdout.split()[0]
        print(f"ingested {path.name} in {time.perf_counter() - started:.1f} s", flush=True)
    settings = Settings(home=home, **_settings_overrides(env or {}))
    identities = Identities(Database.open(settings.database_url))
    user = _token(identities, "bench.pathologist", ["pathologist"])
    engineer = _token(identities, "bench.engineer", ["ai_engineer"])
    worker = _token(identities, "svc.bench", ["service"], name="bench", scopes=["worker"])
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "iain.cli", "serve", "--port", str(port)], env=full_env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        first = next(iter(ids.values()))
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the hub exited with {proc.returncode}")
            try:
                answer = httpx.get(
                    f"{base}/slides/{first}.dzi",
                    headers={"Authorization": f"Bearer {user}"},
                    timeout=2,
                )
                if answer.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the hub did not answer")
            time.sleep(0.2)
        yield Hub(base, proc, home, ids, user, engineer, worker, storage_pids or [])
    finally:
        proc.terminate()
        proc.wait(20)


def _settings_overrides(env: dict[str, str]) -> dict[str, Any]:
    # Only where the database lives matters here (users and tokens).
    url = env.get("IAIN_DATABASE_URL")
    return {"database_url": url} if url else {}


def register(hub: Hub, artefact: bytes, document: dict[str, Any]) -> str:
    """POST /api/models as the AI engineer: the model's id."""
    with hub.client(hub.engineer) as http:
        response = http.post(
            "/api/models",
            files={
                "manifest": ("manifest.json", json.dumps(document).encode(), "application/json"),
                "artefact": ("model.pt", artefact, "application/octet-stream"),
            },
        )
    if response.status_code != 201:
        raise RuntimeError(f"registering {document['name']}: {response.text}")
    model_id: str = response.json()["id"]
    return model_id


@dataclass
class SlidePlan:
    slide: SlideSpec
    pyramid: Pyramid
    plan: Plan  # the whole slide, tissue only, as a job without a region runs


def slide_plan(hub: Hub, slide_id: str, spec: ModelSpec) -> SlidePlan:
    """The patch plan a job on the whole slide would run (same mask, same grid)."""
    with hub.client(hub.user) as http:
        detail = http.get(f"/api/slides/{slide_id}").raise_for_status().json()
        dzi = http.get(f"/slides/{slide_id}.dzi").raise_for_status().text
        thumb = (
            http.get(f"/api/slides/{slide_id}/thumbnail", params={"size": THUMBNAIL_SIZE})
            .raise_for_status()
            .content
        )
    slide = SlideSpec(
        address=slide_id,
        width=int(detail["width"]),
        height=int(detail["height"]),
        mpp=detail.get("mpp"),
        content_hash="",
        dzi="",
        tiles="",
        thumbnail="",
    )
    pyramid = Pyramid.from_dzi(dzi)
    mask, _ = tissue_of(thumb, slide, pyramid)
    plan = plan_patches(spec, slide, pyramid, tissue=mask, region=None)
    return SlidePlan(slide, pyramid, plan)


def band(sp: SlidePlan, patches: int) -> tuple[Region, int]:
    """A full-width band of grid rows around the slide's middle holding about `patches`
    tissue patches (at least that many, or the whole slide), grown row by row on the side
    with more patches. The region's edges fall inside the band's first and last rows, as
    plan_patches rounds them. Returns the region and its patch count."""
    plan = sp.plan
    if patches >= plan.count:
        return Region(0, 0, sp.slide.width, sp.slide.height), plan.count
    per_row = np.bincount(plan.cells[:, 1], minlength=plan.rows)
    r0 = r1 = plan.rows // 2
    total = int(per_row[r0])
    while total < patches:
        up = int(per_row[r0 - 1]) if r0 > 0 else -1
        down = int(per_row[r1 + 1]) if r1 + 1 < plan.rows else -1
        if up >= down:
            r0 -= 1
            total += up
        else:
            r1 += 1
            total += down
    y0 = math.ceil(r0 * plan.l0_cell_h)
    y1 = min(sp.slide.height, math.floor((r1 + 1) * plan.l0_cell_h))
    return Region(0, y0, sp.slide.width, max(1, y1 - y0)), total


@dataclass
class JobRun:
    wall_s: float  # from the job's creation to its completion
    patches: int
    provenance: dict[str, Any]
    window: Window
    tiles: TileStats

    @property
    def per_s(self) -> float:
        """Patches per second of the inference loop (reading, assembling, the model)."""
        return self.patches / self.window.wall_s


_WORKERS = itertools.count(1)


class Jobs:
    """Jobs created as the pathologist and run by an in-process Worker (burst mode) over
    HTTP, one at a time. The worker is kept from job to job (its model stays loaded, as a
    long-running worker's does) unless a job asks for a `fresh` one: a new worker with an
    empty artefact cache, which downloads and loads the model as on a new node."""

    def __init__(
        self,
        hub: Hub,
        device: str,
        cache_dir: Path,
        tile_threads: int = 8,
        connections: int = 16,
    ) -> None:
        self.hub = hub
        self.device = device
        self.cache_dir = cache_dir
        self.tile_threads = tile_threads
        self.client = TimedClient(hub.base, hub.worker, stats=TileStats(), connections=connections)
        self.worker = self._worker()

    def _worker(self) -> Worker:
        n = next(_WORKERS)
        config = WorkerConfig(
            name=f"bench-worker-{n}",
            device=self.device,
            cache_dir=self.cache_dir / f"worker-{n}",
            burst=True,
            tile_threads=self.tile_threads,
        )
        return Worker(self.client, config)

    def close(self) -> None:
        self.client.close()

    def run(
        self,
        model_id: str,
        slide_id: str,
        region: Region | None,
        *,
        fresh: bool = False,
        during: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> JobRun:
        """Creates the job, runs it, checks that it succeeded. `during` is entered around
        the worker's run (a GPU sampler, say)."""
        body: dict[str, Any] = {"model_id": model_id, "slides": [slide_id], "force": True}
        if region is not None:
            body["region"] = {
                "x": region.x,
                "y": region.y,
                "width": region.width,
                "height": region.height,
            }
        if fresh:
            self.worker = self._worker()
        stats, window = TileStats(), Window()
        self.client.stats = stats
        self.client.provenance = {}
        with self.hub.client(self.hub.user) as http:
            started = time.perf_counter()
            response = http.post("/api/inference/jobs", json=body)
            if response.status_code != 201:
                raise RuntimeError(f"creating the job: {response.text}")
            job_id = response.json()["jobs"][0]["id"]
            with (
                measured_reader(stats, window, self.hub.proc.pid, self.hub.storage_pids),
                during() if during is not None else nullcontext(),
            ):
                self.worker.run()
            wall = time.perf_counter() - started
            state = http.get(f"/api/inference/jobs/{job_id}").raise_for_status().json()
        if state["state"] != "succeeded":
            raise RuntimeError(f"the job ended {state['state']}: {state.get('error')}")
        provenance = self.client.provenance
        return JobRun(wall, int(provenance["patches"]), provenance, window, stats)


# -- reporting ----------------------------------------------------------------------------


def job_figures(run: JobRun) -> dict[str, Any]:
    w, t = run.window, run.tiles
    return {
        "patches": run.patches,
        "job_wall_s": run.wall_s,
        "durations_s": run.provenance["durations_s"],
        "loop_s": w.wall_s,
        "patches_per_s": run.per_s,
        "tiles_fetched": w.fetched,
        "read_s": w.read_s,
        "worker_cpu_s": w.cpu_s,
        "hub_cpu_s": w.hub_cpu_s,
        "storage_cpu_s": w.storage_cpu_s,
        "machine_cpu_s": w.machine_cpu_s,
        "tile_loads": t.tiles,
        "fetch_wall_s": t.fetch_wall_s,
        "fetch_cpu_s": t.fetch_cpu_s,
        "load_wall_s": t.load_wall_s,
        "load_cpu_s": t.load_cpu_s,
    }


def table(header: list[str], rows: list[list[str]]) -> str:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ensure_slide(path: Path, width: int, height: int) -> float:
    """Writes the synthetic slide if it is missing: the seconds it took (0 if it was there)."""
    if path.exists():
        return 0.0
    from iain.synthetic import write_synthetic_slide

    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"generating {path.name} ({width} x {height})...", flush=True)
    started = time.perf_counter()
    write_synthetic_slide(path, width, height)
    took = time.perf_counter() - started
    print(f"  {took:.1f} s ({width * height / took / 1e6:.1f} Mpx/s)", flush=True)
    return took
