"""Inference on CPU, side by side in one run (issue 12): the model alone against the whole
pipeline that feeds it, and a whole-slide job's wall time.

1. Model only: ResNet-18 (random weights, 224 px, batch 32) through the worker's Runner
   (normalisation included) over uint8 windows already in memory: patches/s. Measured
   before and after the pipeline runs (the mean is the reference).
2. Pipeline: the same model as a job over a band of the benchmark slide with about
   --patches tissue patches: `iain serve` in its own process (its CPU and GIL are not the
   worker's) serving the stored tiles from S3 (SeaweedFS, started here) or a local
   directory, an in-process Worker in burst mode fetching them over HTTP (TileReader's
   threads, Pillow decode), assembling batches in a thread and running them. Reported:
   patches/s of the inference loop and its ratio to model only (target >= 90 %), tiles
   fetched per patch, TileReader.read_s per patch, and CPU per patch: this process's, the
   tile threads' (HTTP fetch and decode, each tile timed with time.thread_time), the hub's
   and the S3 server's (from /proc). The hub's tile cache is off (IAIN_TILE_CACHE_MB=0):
   every job reads its tiles from storage, so jobs over the same band compare.
3. Feed ceiling: a small CNN (~0.1 GFLOP a patch) as a job over the same band: what
   reading, decoding and assembling deliver when the model costs almost nothing.
4. Whole slide: the small CNN as a job over all the tissue of a smaller slide
   (16384 x 12288, generated into bench/out if missing): wall time from the job's creation
   to its completion, and the worker's own durations (model load, tissue, inference).

    python bench/inference_cpu.py [--storage s3|local] [--slide PATH] [--patches N]
                                  [--seconds 60] [--threads N] [--json PATH]
    python bench/inference_cpu.py --quick      # seconds, on a tiny generated slide

Default --patches: what model only does in --seconds (capped by the slide's tissue).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
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
    children,
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
from tests.s3server import SeaweedS3  # noqa: E402

OUT = REPO / "bench" / "out"
BIG = OUT / "bench-60000x40000.tiff"
SMALL = (16384, 12288)
RESOLUTION = 0.5  # µm per pixel: 224-px patches of 112 µm, read from the level below 0


def default_slide() -> Path:
    if BIG.exists():
        return BIG
    found = sorted(OUT.glob("bench-*.tiff"), key=lambda p: p.stat().st_size)
    if not found:
        raise SystemExit(f"no slide in {OUT}: run `make bench-slide` (bench/make_slide.py)")
    return found[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--storage", choices=("s3", "local"), default="s3")
    ap.add_argument("--slide", type=Path, default=None, help="default: the 60000x40000 one")
    ap.add_argument("--small-slide", type=Path, default=OUT / "bench-16384x12288.tiff")
    ap.add_argument("--patches", type=int, default=None, help="patches of the pipeline run")
    ap.add_argument("--seconds", type=float, default=60.0, help="to size the default --patches")
    ap.add_argument("--model-seconds", type=float, default=15.0, help="each model-only run")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--tile-threads", type=int, default=8, help="the worker's tile threads")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--resolution", type=float, default=RESOLUTION)
    ap.add_argument("--no-whole-slide", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny slide, seconds")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.quick:
            args.seconds, args.model_seconds = 3.0, 1.0
            args.slide = args.small_slide = tmp / "quick-4096x3072.tiff"
            ensure_slide(args.slide, 4096, 3072)
        else:
            args.slide = args.slide or default_slide()
            ensure_slide(args.small_slide, *SMALL)
        results = measure(args, tmp)
    print()
    print(report(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "tile_threads": args.tile_threads,
        "storage": args.storage,
        "slide": args.slide.name,
        "small_slide": args.small_slide.name,
        "batch": args.batch,
        "resolution_um": args.resolution,
    }
    cpu = Device.named("cpu")
    resnet = torchscript_bytes(build("resnet18"))
    small = torchscript_bytes(build("small_cnn"))
    resnet_doc = manifest("bench-resnet18", resolution=args.resolution, batch_size=args.batch)
    small_doc = manifest("bench-small-cnn", resolution=args.resolution, batch_size=args.batch)
    resnet_spec = spec_of(resnet_doc, resnet)
    resnet_runner = Runner(load_torchscript(resnet, cpu.device), resnet_spec, cpu)
    small_runner = Runner(load_torchscript(small, cpu.device), spec_of(small_doc, small), cpu)
    window = resnet_spec.input_size

    def alone(runner: Runner, seconds: float, label: str) -> ModelOnly:
        run = model_only(runner, window, args.batch, seconds=seconds)
        print(f"{label}: {run.per_s:.1f} patches/s", flush=True)
        return run

    first = alone(resnet_runner, args.model_seconds, "model only, resnet18")

    with contextlib.ExitStack() as stack:
        env = {"IAIN_TILE_CACHE_MB": "0"}
        storage_pids: list[int] = []
        if args.storage == "s3":
            s3 = stack.enter_context(SeaweedS3(tmp / "s3"))
            env.update(s3.env("bench"))
            storage_pids = children("weed")
        slides = [args.slide] if args.slide == args.small_slide else [args.slide, args.small_slide]
        h = stack.enter_context(hub(tmp / "home", slides, env, storage_pids=storage_pids))
        resnet_id = register(h, resnet, resnet_doc)
        small_id = register(h, small, small_doc)
        big_id = h.slides[args.slide.name]
        sp = slide_plan(h, big_id, resnet_spec)
        wanted = args.patches or max(args.batch, round(first.per_s * args.seconds))
        region, count = band(sp, wanted)
        results["slide_tissue_patches"] = sp.plan.count
        results["region"] = [region.x, region.y, region.width, region.height]
        print(
            f"pipeline region {results['region']}: {count} patches "
            f"(of {sp.plan.count} on the slide's tissue)",
            flush=True,
        )

        jobs = stack.enter_context(contextlib.closing(Jobs(h, "cpu", tmp, args.tile_threads)))
        # A job of one grid row first, with each model: loaded and warm (TorchScript
        # optimises on its first runs) before the measured job, as in a running worker.
        warm, _ = band(sp, 1)

        def job(model_id: str, slide_id: str, label: str, whole: bool = False) -> JobRun:
            if whole:
                run = jobs.run(model_id, slide_id, None, fresh=True)
            else:
                jobs.run(model_id, slide_id, warm)
                run = jobs.run(model_id, slide_id, region)
            print(
                f"{label}: {run.patches} patches, {run.per_s:.1f} patches/s, "
                f"job {run.wall_s:.1f} s",
                flush=True,
            )
            return run

        pipeline = job(resnet_id, big_id, "pipeline, resnet18")
        feed = job(small_id, big_id, "pipeline, small CNN")
        second = alone(resnet_runner, args.model_seconds, "model only, resnet18 (again)")
        small_alone = alone(small_runner, min(args.model_seconds, 5.0), "model only, small CNN")
        whole = None
        if not args.no_whole_slide:
            # A new worker (model downloaded and loaded), the whole slide's tissue.
            small_slide = h.slides[args.small_slide.name]
            whole = job(small_id, small_slide, "whole slide, small CNN", whole=True)

    results["model_only"] = {
        "resnet18": [vars(first), vars(second)],
        "small_cnn": [vars(small_alone)],
    }
    results["pipeline"] = {"resnet18": job_figures(pipeline), "small_cnn": job_figures(feed)}
    if whole is not None:
        results["whole_slide"] = job_figures(whole)
    return results


def report(r: dict[str, Any]) -> str:
    rn = [ModelOnly(**m) for m in r["model_only"]["resnet18"]]
    sm = ModelOnly(**r["model_only"]["small_cnn"][0])
    ref = statistics.mean(m.per_s for m in rn)
    p, f = r["pipeline"]["resnet18"], r["pipeline"]["small_cnn"]

    def us(seconds: float, n: int) -> str:
        return f"{1e6 * seconds / max(1, n):.0f}"

    def cores(j: dict[str, Any]) -> str:
        ours = j["worker_cpu_s"] + j["hub_cpu_s"] + j["storage_cpu_s"]
        others = max(0.0, j["machine_cpu_s"] - ours)
        return f"{ours / j['loop_s']:.2f} / {others / j['loop_s']:.2f}"

    def alone_cores(*runs: ModelOnly) -> str:
        return "; ".join(f"{m.cpu_s / m.seconds:.2f} / {m.others_cores:.2f}" for m in runs)

    rows = [
        [
            "model only, ResNet-18 (before / after)",
            f"{rn[0].patches} / {rn[1].patches}",
            f"{rn[0].per_s:.1f} / {rn[1].per_s:.1f}",
            "100 %",
            f"{rn[0].cpu_us_per_patch:.0f} / {rn[1].cpu_us_per_patch:.0f}",
            "–",
            "–",
            "–",
            alone_cores(*rn),
        ],
        [
            "**pipeline, ResNet-18**",
            str(p["patches"]),
            f"**{p['patches_per_s']:.1f}**",
            f"**{100 * p['patches_per_s'] / ref:.0f} %**",
            us(p["worker_cpu_s"], p["patches"]),
            us(p["hub_cpu_s"], p["patches"]),
            us(p["storage_cpu_s"], p["patches"]),
            f"{p['tiles_fetched'] / max(1, p['patches']):.2f}",
            cores(p),
        ],
        [
            "model only, small CNN",
            str(sm.patches),
            f"{sm.per_s:.0f}",
            "100 %",
            f"{sm.cpu_us_per_patch:.0f}",
            "–",
            "–",
            "–",
            alone_cores(sm),
        ],
        [
            "pipeline, small CNN (feed ceiling)",
            str(f["patches"]),
            f"{f['patches_per_s']:.0f}",
            f"{100 * f['patches_per_s'] / sm.per_s:.0f} %",
            us(f["worker_cpu_s"], f["patches"]),
            us(f["hub_cpu_s"], f["patches"]),
            us(f["storage_cpu_s"], f["patches"]),
            f"{f['tiles_fetched'] / max(1, f['patches']):.2f}",
            cores(f),
        ],
    ]
    storage = "S3 (SeaweedFS)" if r["storage"] == "s3" else "local disk"
    others = [m.others_cores for m in (*rn, sm)]
    others += [
        max(0.0, j["machine_cpu_s"] - j["worker_cpu_s"] - j["hub_cpu_s"] - j["storage_cpu_s"])
        / j["loop_s"]
        for j in (p, f)
    ]
    out = [
        f"Machine: {r['machine']}; torch threads {r['torch_threads']}, worker tile threads "
        f"{r['tile_threads']}. Slide {r['slide']} ({r['slide_tissue_patches']} tissue "
        f"patches at {r['resolution_um']} µm/px, 224 px), stored on {storage}; band "
        f"{r['region']}; batch {r['batch']}. Other processes kept up to "
        f"{max(others):.2f} cores busy during a run"
        + (" (disturbed: rerun on an idle machine)." if max(others) > 0.2 else "."),
        "",
        table(
            [
                "run",
                "patches",
                "patches/s",
                "of model only",
                "worker CPU µs/patch",
                "hub CPU µs/patch",
                "S3 CPU µs/patch",
                "tiles/patch",
                "cores: ours / other processes",
            ],
            rows,
        ),
        "",
        "Tile reads in the pipeline runs (summed over the worker's tile threads):",
        "",
        table(
            [
                "run",
                "TileReader.read_s µs/patch",
                "read+decode CPU µs/patch",
                "fetch (HTTP) wall µs/tile",
                "fetch CPU µs/tile",
                "decode CPU µs/tile",
                "worker CPU outside tile threads µs/patch",
            ],
            [
                [
                    name,
                    us(j["read_s"], j["patches"]),
                    us(j["load_cpu_s"], j["patches"]),
                    us(j["fetch_wall_s"], j["tile_loads"]),
                    us(j["fetch_cpu_s"], j["tile_loads"]),
                    us(j["load_cpu_s"] - j["fetch_cpu_s"], j["tile_loads"]),
                    us(j["worker_cpu_s"] - j["load_cpu_s"], j["patches"]),
                ]
                for name, j in (("ResNet-18", p), ("small CNN", f))
            ],
        ),
    ]
    w = r.get("whole_slide")
    if w:
        d = w["durations_s"]
        out += [
            "",
            f"Whole slide, small CNN, {r['small_slide']}: **{w['job_wall_s']:.1f} s** from "
            f"the job's creation to its completion, {w['patches']} patches "
            f"({w['tiles_fetched']} tiles); worker: model load {d['load_s']:.2f} s, tissue "
            f"{d['tissue_s']:.2f} s, inference {d['inference_s']:.2f} s "
            f"({w['patches_per_s']:.0f} patches/s), total {d['total_s']:.2f} s.",
        ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
