"""AI assistance on the command line.

`iain worker --hub URL --token T`   an inference worker (pulls jobs over HTTPS)
`iain workers token NAME`           a worker's service account and its worker-scoped token
`iain models add ARTEFACT --manifest FILE`, `iain models list`
`iain jobs run --model NAME[:VERSION] SLIDE... [--case C]`, `iain jobs list`
`iain train SLIDE --name NAME`      a classifier trained from the slide's annotations

`models` and `jobs` talk to a hub over HTTP with an API token (IAIN_TOKEN or --token),
like any client: the AI engineer's machine needs no database or storage credentials."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import IO, Annotated, Any

import httpx
import typer
from rich.console import Console

from exchange.core.db import Database
from exchange.core.principal import Role, Scope
from exchange.identity.accounts import Identities, IdentityError
from iain.cli_settings import settings_or_exit

worker_cli = typer.Typer(no_args_is_help=True, help="Inference workers' service accounts.")
models_cli = typer.Typer(no_args_is_help=True, help="The model registry (over HTTP).")
jobs_cli = typer.Typer(no_args_is_help=True, help="Inference jobs (over HTTP).")
err = Console(stderr=True)
out = Console()

HubUrl = Annotated[str, typer.Option("--hub", envvar="IAIN_HUB", help="the hub's base URL")]
Token = Annotated[str, typer.Option("--token", envvar="IAIN_TOKEN", help="an API token")]


def run_worker(
    hub: HubUrl = "http://127.0.0.1:8000",
    token: Token = "",
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N")] = "cpu",
    burst: Annotated[bool, typer.Option(help="drain the queue, then exit")] = False,
    max_jobs: Annotated[int | None, typer.Option(help="exit after this many jobs")] = None,
    name: Annotated[str | None, typer.Option(help="how the hub lists this worker")] = None,
    cache_dir: Annotated[Path, typer.Option(help="model artefacts kept here")] = Path(
        ".iain/worker"
    ),
) -> None:
    """Run an inference worker: claim jobs from the hub, run them, send the results."""
    # Imported here: torch loads only for the commands that run models.
    from inference.hub_client import HubClient
    from inference.protocol import JobFailure
    from inference.worker import Worker, WorkerConfig

    if not token:
        err.print("[red]a worker needs its token:[/red] --token or IAIN_TOKEN")
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per tile
    config = WorkerConfig(device=device, burst=burst, max_jobs=max_jobs, cache_dir=cache_dir)
    if name:
        config.name = name
    client = HubClient(hub, token)
    try:
        worker = Worker(client, config)
    except JobFailure as exc:
        err.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(2) from exc
    worker.install_signals()
    try:
        count = worker.run()
    except httpx.HTTPError as exc:
        err.print(f"[red]the hub at {hub} cannot be reached:[/red] {exc}")
        raise typer.Exit(1) from exc
    finally:
        client.close()
    out.print(f"{count} job(s) run")


@worker_cli.command("token")
def worker_token(
    name: Annotated[str, typer.Argument(help="the worker (node) name")],
    centre: Annotated[str, typer.Option(help="the centre whose jobs the node runs")] = "caen",
    all_centres: Annotated[
        bool, typer.Option(help="run every centre's jobs (a pool the centres share)")
    ] = False,
) -> None:
    """Create a worker's service account (if new) and print a new worker-scoped token."""
    identities = Identities(Database.open(settings_or_exit().database_url))
    username = f"svc.{name}"
    try:
        if identities.user(username) is None:
            identities.add_user(username, centre, [Role.SERVICE], display_name=f"worker {name}")
        scopes = [Scope.WORKER, *([Scope.ALL_CENTRES] if all_centres else [])]
        _row, secret = identities.create_token(username, name=name, scopes=scopes)
    except IdentityError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from exc
    out.print(secret)


def _client(hub: str, token: str) -> httpx.Client:
    if not token:
        err.print("[red]an API token is needed:[/red] --token or IAIN_TOKEN")
        raise typer.Exit(2)
    return httpx.Client(
        base_url=hub.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=600
    )


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:300]
        err.print(f"[red]the hub refused ({response.status_code}):[/red] {detail}")
        raise typer.Exit(2 if response.status_code < 500 else 1)
    return response.json() if response.content else None


@models_cli.command("add")
def add_model(
    artefact: Annotated[Path, typer.Argument(help="a TorchScript (.pt) or torch.export (.pt2)")],
    manifest: Annotated[Path, typer.Option(help="the manifest, TOML or JSON")],
    hub: HubUrl = "http://127.0.0.1:8000",
    token: Token = "",
) -> None:
    """Register a model version (an AI engineer's token)."""
    for path in (artefact, manifest):
        if not path.is_file():
            err.print(f"[red]no file {path}[/red]")
            raise typer.Exit(2)
    with _client(hub, token) as client, artefact.open("rb") as handle:
        files: dict[str, tuple[str, IO[bytes] | bytes, str]] = {
            "manifest": (manifest.name, manifest.read_bytes(), "text/plain"),
            "artefact": (artefact.name, handle, "application/octet-stream"),
        }
        model = _answer(client.post("/api/models", files=files))
    out.print(f"{model['name']} {model['version']}  id {model['id']}  sha256 {model['sha256']}")


@models_cli.command("list")
def list_models(hub: HubUrl = "http://127.0.0.1:8000", token: Token = "") -> None:
    """The registered models."""
    with _client(hub, token) as client:
        models = _answer(client.get("/api/models"))
    for m in models:
        out.print(
            f"{m['id']}  {m['name']} {m['version']}  {m['task']}  {m['intended_use']}  "
            f"{m['licence']}  sha256 {m['sha256'][:12]}",
            highlight=False,
            soft_wrap=True,
        )


def _model_id(client: httpx.Client, model: str) -> str:
    name, _, version = model.partition(":")
    models = _answer(client.get("/api/models"))
    matches = [
        m
        for m in models
        if m["id"] == model or (m["name"] == name and version in ("", m["version"]))
    ]
    if not matches:
        err.print(f"[red]no model {model!r}[/red] (see `iain models list`)")
        raise typer.Exit(2)
    newest: dict[str, Any] = max(matches, key=lambda m: m["created_at"])
    return str(newest["id"])


@jobs_cli.command("run")
def run_jobs(
    slides: Annotated[list[str] | None, typer.Argument(help="slide ids")] = None,
    model: Annotated[str, typer.Option(help="model id, NAME or NAME:VERSION")] = "",
    case: Annotated[str | None, typer.Option(help="every slide of this case")] = None,
    force: Annotated[bool, typer.Option(help="run again even if a result exists")] = False,
    wait: Annotated[bool, typer.Option(help="wait for the jobs to end")] = False,
    hub: HubUrl = "http://127.0.0.1:8000",
    token: Token = "",
) -> None:
    """Queue one job per slide; with --wait, follow them to their end."""
    with _client(hub, token) as client:
        body: dict[str, Any] = {
            "model_id": _model_id(client, model),
            "slides": slides or [],
            "force": force,
        }
        if case:
            body["case_id"] = case
        made = _answer(client.post("/api/inference/jobs", json=body))
        ids = [job["id"] for job in made["jobs"]]
        out.print(f"{len(ids)} job(s), {made['created']} new: {' '.join(ids)}")
        if not wait:
            return
        jobs = _follow(client, ids)
        failed = [j for j in jobs if j["state"] != "succeeded"]
        for job in failed:
            err.print(f"job {job['id']} {job['state']}: {job['error'] or ''}")
        if failed:
            raise typer.Exit(1)


def _follow(client: httpx.Client, ids: list[str]) -> list[dict[str, Any]]:
    """Polls the jobs until each has ended, printing their progress: their last state."""
    ended = {"succeeded", "failed", "cancelled"}
    while True:
        jobs = [_answer(client.get(f"/api/inference/jobs/{i}")) for i in ids]
        out.print(
            " ".join(f"{j['id']}:{j['state']}:{j['percent']:.0f}%" for j in jobs),
            highlight=False,
        )
        if all(j["state"] in ended for j in jobs):
            return jobs
        time.sleep(2)


def train_model(
    slide: Annotated[str, typer.Argument(help="the slide whose annotations teach the model")],
    name: Annotated[str, typer.Option(help="the model's name in the registry")],
    labels: Annotated[
        list[str] | None, typer.Option("--label", help="only these labels (repeat)")
    ] = None,
    resolution: Annotated[float, typer.Option(help="µm per pixel patches are read at")] = 1.0,
    epochs: Annotated[int, typer.Option(help="passes over the patches")] = 6,
    run: Annotated[bool, typer.Option(help="then run it over the slide")] = False,
    hub: HubUrl = "http://127.0.0.1:8000",
    token: Token = "",
) -> None:
    """Train a patch classifier from a slide's annotations (their labels are the classes);
    a worker trains it and the hub registers it. Waits for the result."""
    with _client(hub, token) as client:
        body: dict[str, Any] = {
            "slide": slide,
            "name": name,
            "resolution": resolution,
            "epochs": epochs,
            "run_after": run,
        }
        if labels:
            body["labels"] = labels
        job = _answer(client.post("/api/models/train", json=body))
        out.print(f"training job {job['id']} queued (a worker runs it)")
        (done,) = _follow(client, [job["id"]])
    if done["state"] != "succeeded":
        err.print(f"training {done['state']}: {done['error'] or ''}")
        raise typer.Exit(1)
    model, summary = done["result_model"], done["summary"]
    out.print(
        f"{model['name']} {model['version']}  id {model['id']}  "
        f"held-out accuracy {summary.get('held_out_accuracy')}  patches {summary.get('patches')}",
        highlight=False,
    )


@jobs_cli.command("list")
def list_jobs(
    hub: HubUrl = "http://127.0.0.1:8000",
    token: Token = "",
    as_json: Annotated[bool, typer.Option("--json", help="JSON, one job a line")] = False,
) -> None:
    """The jobs you may see, newest first."""
    with _client(hub, token) as client:
        jobs = _answer(client.get("/api/inference/jobs"))
    if as_json:
        for job in jobs:
            sys.stdout.write(json.dumps(job) + "\n")
        return
    for j in jobs:
        what = f"{j['model']['name']} {j['model']['version']}" if j["model"] else j["kind"]
        out.print(
            f"{j['id']}  {what}  slide {j['slide']}  {j['state']} {j['percent']:.0f}%  "
            f"{j['error'] or ''}",
            highlight=False,
            soft_wrap=True,
        )
