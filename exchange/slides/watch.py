"""The drop folder (`iain watch DIR`): ingests what scanners write into it, once each.

Each top-level entry of the folder is one slide: a file, an MRXS file with its data folder,
or a folder (a DICOM series). An entry is ingested once its files' sizes and modification
times have stayed the same for `settle` seconds (a scanner may still be writing). Then it
moves to DIR/ingested/ (that move is the record that it was processed: a restarted watcher
sees only what is left), or to DIR/failed/ with `<name>.reason.txt` saying why.

Before each ingest the watcher writes the slide id it is about to use in
DIR/.iain-watch/pending.json. If it is killed mid-ingest, the restarted watcher looks that id
up: recorded means the slide is in (the entry is just moved), otherwise the half-stored
objects are deleted and the entry is ingested afresh. Either way there is one slide."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from exchange.core.errors import ExchangeError
from exchange.core.ids import new_id
from exchange.slides.catalogue import Catalogue
from exchange.slides.ingest import ingest_path
from storage import ObjectStore, StorageError
from tiles.errors import TilesError
from tiles.location import slide_prefix

INGESTED = "ingested"
FAILED = "failed"
STATE_DIR = ".iain-watch"
REASON_SUFFIX = ".reason.txt"
# Names scanners and copy tools use for files still being written.
_PARTIAL_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")

Signature = tuple[tuple[str, int, int], ...]


class FolderBusy(Exception):
    """Another watcher holds the folder."""


@dataclass(frozen=True)
class Entry:
    name: str  # the top-level name (the .mrxs file's for an MRXS slide)
    target: Path  # what ingest_path is given
    paths: tuple[Path, ...]  # what moves to ingested/ or failed/


@dataclass(frozen=True)
class Outcome:
    name: str
    slide_id: str | None  # None: refused
    reason: str | None = None


def entries(folder: Path) -> list[Entry]:
    """The slides waiting in the drop folder."""
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    found: list[Entry] = []
    mrxs_dirs = {n[: -len(".mrxs")] for n in names if n.lower().endswith(".mrxs")}
    for name in names:
        path = folder / name
        if name.startswith(".") or name in (INGESTED, FAILED) or name.endswith(_PARTIAL_SUFFIXES):
            continue
        if path.is_dir() and name in mrxs_dirs:
            continue  # the data folder of an MRXS slide: goes with its .mrxs file
        if name.lower().endswith(".mrxs") and (folder / name[: -len(".mrxs")]).is_dir():
            found.append(Entry(name, path, (path, folder / name[: -len(".mrxs")])))
        elif path.is_file() or path.is_dir():
            found.append(Entry(name, path, (path,)))
    return found


def signature(entry: Entry) -> Signature:
    """Every file's path, size and modification time: equal twice, and nothing is being
    written."""
    items: list[tuple[str, int, int]] = []
    for top in entry.paths:
        walk: Iterator[Path] = iter([top]) if top.is_file() else top.rglob("*")
        for path in walk:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            items.append((path.as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(sorted(items))


def _move(entry: Entry, folder: Path) -> Path:
    """Moves the entry's paths into `folder` (into a numbered subfolder when a name is
    taken, so an MRXS file stays beside its data folder); returns where its main path went."""
    folder.mkdir(exist_ok=True)
    target, n = folder, 2
    while (
        any((target / p.name).exists() for p in entry.paths)
        or (target / (entry.name + REASON_SUFFIX)).exists()
    ):
        target, n = folder / f"{entry.name}-{n}", n + 1
    target.mkdir(exist_ok=True)
    for path in entry.paths:
        shutil.move(str(path), str(target / path.name))
    return target / entry.paths[0].name


class Watcher:
    def __init__(
        self,
        store: ObjectStore,
        catalogue: Catalogue,
        folder: Path,
        centre: str,
        *,
        settle_s: float = 5.0,
        log: Callable[[str], None] = print,
    ) -> None:
        catalogue.db.check_centre(centre)  # a wrong centre is the watcher's error, not a file's
        self.store, self.catalogue = store, catalogue
        self.folder, self.centre = folder, centre
        self.settle_s, self.log = settle_s, log
        self._seen: dict[str, tuple[Signature, float]] = {}
        # Ingested entries that could not be moved away (permissions...): never again.
        self._done: dict[str, Signature] = {}
        self._state = folder / STATE_DIR
        self._pending = self._state / "pending.json"

    # --- the journal ------------------------------------------------------------------------

    def _write_pending(self, name: str, slide_id: str) -> None:
        self._state.mkdir(exist_ok=True)
        tmp = self._pending.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump({"name": name, "slide_id": slide_id}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._pending)

    def recover(self) -> None:
        """Finishes what a killed watcher left: see the module's docstring."""
        try:
            pending = json.loads(self._pending.read_text())
            name, slide_id = str(pending["name"]), str(pending["slide_id"])
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError):
            self._pending.unlink(missing_ok=True)  # torn write: no ingest had begun
            return
        entry = next((e for e in entries(self.folder) if e.name == name), None)
        if self.catalogue.get(slide_id) is not None:
            if entry is not None:
                try:
                    _move(entry, self.folder / INGESTED)
                except OSError as exc:
                    self._done[entry.name] = signature(entry)
                    self.log(f"ingested {name} but cannot move it to {INGESTED}/: {exc}")
            self.log(f"{slide_id}  {name}  (recorded before an interruption)")
        else:
            for obj in list(self.store.list(slide_prefix(slide_id))):
                self.store.delete(obj.key)
        self._pending.unlink(missing_ok=True)

    # --- polling ----------------------------------------------------------------------------

    def stable(self, now: float) -> list[Entry]:
        """Entries whose files have not changed for settle_s seconds."""
        ready: list[Entry] = []
        current = entries(self.folder)
        names = {e.name for e in current}
        for name in list(self._seen):
            if name not in names:
                del self._seen[name]
        for entry in current:
            sig = signature(entry)
            if self._done.get(entry.name) == sig:
                continue
            seen = self._seen.get(entry.name)
            if seen is None or seen[0] != sig:
                self._seen[entry.name] = (sig, now)
            elif now - seen[1] >= self.settle_s:
                ready.append(entry)
        return ready

    def ingest(self, entry: Entry) -> Outcome | None:
        """Ingests one entry and moves it aside; None when storage failed (tried again later)."""
        slide_id = new_id()
        self._write_pending(entry.name, slide_id)
        try:
            slide = ingest_path(
                self.store,
                self.catalogue,
                entry.target,
                self.centre,
                name=entry.name,
                slide_id=slide_id,
            )
        except StorageError as exc:
            # The hub's storage, not the file: leave the file where it is and retry later.
            self._pending.unlink(missing_ok=True)
            self.log(f"storage error, will retry {entry.name}: {exc}")
            return None
        except (TilesError, ExchangeError) as exc:
            return self._fail(entry, exc.message)
        except Exception as exc:  # a bug must not stop the watcher, nor loop on one file
            return self._fail(entry, f"internal error: {type(exc).__name__}: {exc}")
        self.log(f"{slide.id}  {entry.name}  {slide.vendor} {slide.width}x{slide.height}")
        try:
            _move(entry, self.folder / INGESTED)
        except OSError as exc:
            self._done[entry.name] = signature(entry)
            self.log(f"ingested {entry.name} but cannot move it to {INGESTED}/: {exc}")
        self._pending.unlink(missing_ok=True)
        self._seen.pop(entry.name, None)
        return Outcome(entry.name, slide.id)

    def _fail(self, entry: Entry, reason: str) -> Outcome:
        try:
            moved = _move(entry, self.folder / FAILED)
            moved.with_name(moved.name + REASON_SUFFIX).write_text(reason + "\n")
        except OSError as exc:  # removed meanwhile, or no permission: say so, go on
            self._done[entry.name] = signature(entry)
            self.log(f"cannot move {entry.name} to {FAILED}/: {exc}")
        self._pending.unlink(missing_ok=True)
        self._seen.pop(entry.name, None)
        self.log(f"refused {entry.name}: {reason}")
        return Outcome(entry.name, None, reason)

    def poll(self, now: float | None = None) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for entry in self.stable(time.monotonic() if now is None else now):
            outcome = self.ingest(entry)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _lock(self) -> int:
        """One watcher per folder: two would ingest the same file twice. The kernel drops
        the lock when its holder dies, so a killed watcher never blocks its restart."""
        self._state.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._state / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderBusy(f"another watcher is already watching {self.folder}") from None
        return fd

    def run(self, *, interval_s: float = 2.0, once: bool = False) -> list[Outcome]:
        """Polls until interrupted; `once`: ingests what is complete now, then returns."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = self._lock()
        try:
            return self._run(interval_s, once)
        finally:
            os.close(fd)

    def _run(self, interval_s: float, once: bool) -> list[Outcome]:
        self.recover()
        if once:
            self.stable(time.monotonic())
            time.sleep(self.settle_s)
            return self.poll()
        while True:
            self.poll()
            time.sleep(interval_s)
