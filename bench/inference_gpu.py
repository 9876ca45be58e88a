"""Inference on one GPU (issue 12): the model alone against the whole pipeline that feeds
it, with the GPU's utilisation, for ResNet-50 and ViT-B/16, and a whole-slide job of
~15,000 patches with ResNet-50, end to end. Self-contained: the project and torch only;
it writes its own slide if there is none (bench/out/bench-53000x35000.tiff,
~85 s on 2 cores).

- Model only: random weights, bf16 autocast and channels-last, batch 256 (halved until it
  fits), through the worker's Runner (host uint8 windows pinned, copied, normalised on the
  GPU, probabilities back on the host) over windows already in memory: patches/s.
- Pipeline: the same model as a job over a band of the slide holding what model only does
  in --seconds (at most half the slide): `iain serve` in its own process serving the stored
  tiles from a local directory (tile cache off: every job reads its tiles from storage), an
  in-process Worker on --device (burst mode) fetching them over HTTP with --tile-threads
  threads (each value a run), a warm-up job of a few rows first. patches/s of the inference
  loop, its ratio to model only, and the CPU per patch of the worker and of the hub.
- GPU utilisation: NVML's (the share of time a kernel ran) sampled every 0.2 s in a thread
  during each run: torch.cuda.utilization() where pynvml is installed, else nvidia-smi.
- Whole slide: ResNet-50 over all the slide's tissue by a new worker (model downloaded and
  loaded): wall time from the job's creation to its completion, the worker's durations.

Patches are read at 0.25 µm/px (level 0 of the synthetic slide, 224 px = 56 µm): at
0.5 µm/px, 15,000 patches would need ~55,000 x 55,000 px of tissue, a slide of ~6 Gpx to
generate; at 0.25 µm/px the 53000 x 35000 slide (1.9 Gpx) has 15,002 on its tissue.

    python bench/inference_gpu.py [--device cuda:0] [--slide PATH] [--seconds 20]
                                  [--tile-threads 8,32] [--json PATH]   # < 8 min, one H100
    python bench/inference_gpu.py --device cpu --quick     # every part, on CPU, ~1 min
    python bench/inference_gpu.py --device cpu --plan-only # the slide's patch count
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.models import (  # noqa: E402
    JobRun,
    Jobs,
    ModelOnly,
    band,
    build,
    ensure_slide,
    hub,
    job_figures,
    load_torchscript,
    machine,
    manifest,
    model_only,
    register,
    slide_plan,
    spec_of,
    table,
    torchscript_bytes,
)
from inference.pipeline import Device, Runner  # noqa: E402

OUT = REPO / "bench" / "out"
SIZE = (53000, 35000)
RESOLUTION = 0.25
NAMES = {"resnet50": "ResNet-50", "vit_b16": "ViT-B/16"}


class GpuSampler:
    """The GPU's utilisation (NVML: % of the time a kernel ran), sampled in a thread while
    entered. Without CUDA, or without pynvml and nvidia-smi, it samples nothing."""

    def __init__(self, device: torch.device, interval_s: float = 0.2) -> None:
        self.device = device
        self.interval_s = interval_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._smi: list[str] | None = None

    def _read(self) -> float | None:
        if self._smi is not None:
            try:
                out = subprocess.run(self._smi, capture_output=True, text=True, timeout=5)
                return float(out.stdout.split()[0])
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return None
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:  # pynvml missing, or NVML refused: ask nvidia-smi
            target = str(self.device.index or 0)
            with contextlib.suppress(Exception):
                target = f"GPU-{torch.cuda.get_device_properties(self.device).uuid}"
            self._smi = ["nvidia-smi", "--query-gpu=utilization.gpu"]
            self._smi += ["--format=csv,noheader,nounits", "-i", target]
            return self._read()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            value = self._read()
            if value is None:
                return
            self.samples.append(value)

    def __enter__(self) -> GpuSampler:
        if self.device.type == "cuda":
            self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def fit_batch(runner: Runner, window: int, batch: int) -> int:
    """The largest batch, from `batch` down by halves, that runs without running out of
    device memory."""
    import numpy as np

    while True:
        try:
            runner(np.zeros((batch, window, window, 3), np.uint8))
            return batch
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            batch //= 2
            torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--slide", type=Path, default=None, help=f"default: {SIZE[0]}x{SIZE[1]}")
    ap.add_argument("--models", default="resnet50,vit_b16")
    ap.add_argument("--batch", type=int, default=None, help="default 256 (8 with --quick)")
    ap.add_argument("--resolution", type=float, default=RESOLUTION)
    ap.add_argument("--seconds", type=float, default=20.0, help="sizes each pipeline band")
    ap.add_argument("--model-seconds", type=float, default=10.0)
    ap.add_argument(
        "--tile-threads", default=None, help="the worker's, a run each: default 8,32 (8 quick)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--quick", action="store_true", help="tiny slide, seconds: a check")
    ap.add_argument("--plan-only", action="store_true", help="print the slide's patches")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        build_kind = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
        print(
            f"bench/inference_gpu.py needs a CUDA GPU for --device {args.device}: torch "
            f"{torch.__version__} has none ({build_kind}). Check the script on CPU with "
            "`--device cpu --quick`.",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.model_seconds, args.seconds = 0.5, 1.0
        args.batch = args.batch or 4
        args.tile_threads = args.tile_threads or "8"
    args.batch = args.batch or 256
    args.tile_threads = args.tile_threads or "8,32"
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    print(f"machine: {machine()}; GPU: {gpu}; torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.quick:
            args.slide = tmp / "quick-2048x1536.tiff"
            generated = ensure_slide(args.slide, 2048, 1536)
        else:
            args.slide = args.slide or OUT / f"bench-{SIZE[0]}x{SIZE[1]}.tiff"
            generated = ensure_slide(args.slide, *SIZE)
        results = measure(args, device, tmp)
    results["generation_s"] = generated
    results["gpu"] = gpu
    if results.get("plan_only"):
        return 0
    print()
    print(report(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def measure(args: argparse.Namespace, device: torch.device, tmp: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine(),
        "device": args.device,
        "slide": args.slide.name,
        "resolution_um": args.resolution,
        "torch_threads": torch.get_num_threads(),
    }
    dev = Device.named(args.device)
    threads = [int(t) for t in args.tile_threads.split(",")]
    names = args.models.split(",")
    env = {"IAIN_TILE_CACHE_MB": "0"}
    with hub(tmp / "home", [args.slide], env) as h:
        slide_id = h.slides[args.slide.name]
        doc0 = manifest("plan", resolution=args.resolution)
        sp = slide_plan(h, slide_id, spec_of(doc0, b""))
        results["slide_tissue_patches"] = sp.plan.count
        print(
            f"{args.slide.name}: {sp.plan.count} tissue patches of {sp.plan.cols} x "
            f"{sp.plan.rows} at {args.resolution} µm/px",
            flush=True,
        )
        if args.plan_only:
            results["plan_only"] = True
            return results
        models: dict[str, Any] = {}
        ids: dict[str, str] = {}
        for name in names:
            started = time.perf_counter()
            artefact = torchscript_bytes(build(name))
            doc = manifest(f"bench-{name.replace('_', '-')}", resolution=args.resolution)
            runner = Runner(load_torchscript(artefact, device), spec_of(doc, artefact), dev)
            window = runner.spec.input_size
            batch = fit_batch(runner, window, args.batch)
            doc["batch_size"] = batch
            ids[name] = register(h, artefact, doc)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with GpuSampler(device) as sampler:
                alone = model_only(runner, window, batch, seconds=args.model_seconds)
            peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
            alone_util = sampler.mean
            print(
                f"model only, {name}: batch {batch}, {alone.per_s:.0f} patches/s, GPU "
                f"{_pct(sampler.mean)} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
            del runner
            if device.type == "cuda":
                torch.cuda.empty_cache()
            wanted = min(round(alone.per_s * args.seconds), sp.plan.count // 2)
            region, count = band(sp, max(wanted, batch))
            warm, _ = band(sp, 2 * batch)
            runs = []
            for n in threads:
                jobs = Jobs(h, args.device, tmp, n, connections=max(16, n + 4))
                try:
                    jobs.run(ids[name], slide_id, warm)  # the model loaded and warm
                    with GpuSampler(device) as sampler:
                        run = jobs.run(ids[name], slide_id, region)
                finally:
                    jobs.close()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                print(
                    f"pipeline, {name}, {n} tile threads: {run.patches} patches, "
                    f"{run.per_s:.0f} patches/s, GPU {_pct(sampler.mean)}",
                    flush=True,
                )
                runs.append({"tile_threads": n, "gpu_util": sampler.mean, **job_figures(run)})
            models[name] = {
                "batch": batch,
                "model_only": vars(alone),
                "model_only_gpu_util": alone_util,
                "peak_gpu_mib": peak / 2**20,
                "band_patches": count,
                "pipeline": runs,
            }
        results["models"] = models
        # The whole slide with ResNet-50 (or the first model): a new worker, end to end.
        name = "resnet50" if "resnet50" in ids else names[0]
        jobs = Jobs(h, args.device, tmp, max(threads), connections=max(16, max(threads) + 4))
        try:
            with GpuSampler(device) as sampler:
                whole: JobRun = jobs.run(ids[name], slide_id, None, fresh=True)
        finally:
            jobs.close()
        print(
            f"whole slide, {name}: {whole.patches} patches in {whole.wall_s:.1f} s",
            flush=True,
        )
        results["whole_slide"] = {
            "model": name,
            "tile_threads": max(threads),
            "gpu_util": sampler.mean,
            **job_figures(whole),
        }
    return results


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} %"


def report(r: dict[str, Any]) -> str:
    def us(seconds: float, n: int) -> str:
        return f"{1e6 * seconds / max(1, n):.0f}"

    rows = []
    for name, m in r["models"].items():
        alone = ModelOnly(**m["model_only"])
        rows.append(
            [
                f"{NAMES.get(name, name)}, model only",
                str(m["batch"]),
                "–",
                str(alone.patches),
                f"{alone.per_s:.0f}",
                "100 %",
                _pct(m["model_only_gpu_util"]),
                f"{alone.cpu_s / alone.seconds:.2f}",
                "–",
                "–",
                "–",
                "–",
            ]
        )
        for p in m["pipeline"]:
            rows.append(
                [
                    f"**{NAMES.get(name, name)}, pipeline**",
                    str(m["batch"]),
                    str(p["tile_threads"]),
                    str(p["patches"]),
                    f"**{p['patches_per_s']:.0f}**",
                    f"**{100 * p['patches_per_s'] / alone.per_s:.0f} %**",
                    _pct(p["gpu_util"]),
                    f"{p['worker_cpu_s'] / p['loop_s']:.2f}",
                    f"{p['hub_cpu_s'] / p['loop_s']:.2f}",
                    f"{p['tiles_fetched'] / max(1, p['patches']):.2f}",
                    us(p["fetch_wall_s"], p["tile_loads"]),
                    us(p["load_cpu_s"], p["tile_loads"]),
                ]
            )
    w = r["whole_slide"]
    d = w["durations_s"]
    made = r["generation_s"]
    generated = f"generated in {made:.0f} s" if made else "already there"
    lines = [
        f"Machine: {r['machine']}; GPU: {r['gpu']} ({r['device']}); slide {r['slide']} "
        f"({r['slide_tissue_patches']} tissue patches at {r['resolution_um']} µm/px, 224 px; "
        f"{generated}), local storage, hub tile cache off.",
        "",
        table(
            [
                "run",
                "batch",
                "tile threads",
                "patches",
                "patches/s",
                "of model only",
                "GPU util",
                "worker cores",
                "hub cores",
                "tiles/patch",
                "fetch wall µs/tile",
                "fetch+decode CPU µs/tile",
            ],
            rows,
        ),
        "",
        f"Whole slide, {NAMES.get(w['model'], w['model'])}, {w['tile_threads']} tile threads: "
        f"**{w['job_wall_s']:.1f} s** from the job's creation to its completion, "
        f"{w['patches']} patches ({w['tiles_fetched']} tiles), GPU {_pct(w['gpu_util'])}; "
        f"worker: model download and load {d['load_s']:.2f} s, tissue {d['tissue_s']:.2f} s, "
        f"inference {d['inference_s']:.2f} s ({w['patches_per_s']:.0f} patches/s), total "
        f"{d['total_s']:.2f} s.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
