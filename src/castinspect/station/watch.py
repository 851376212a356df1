"""``castinspect watch``: judge every photo a camera writes into a folder, exactly once.

A photo is taken once it is complete: Linux says when its writer closes it (inotify, through
``watchdog``) or when it is renamed into the folder; a photo found at start-up, or on a network
share (``poll``: no notifications there), once its size and modification time have held still
for ``settle`` seconds. An empty file waits for its writer to close it.

Exactly once, across restarts and ``kill -9``: each photo is recorded under the key
``watch:<sha256>:<name>`` — the log's unique request key is the watcher's state, written in the
same transaction as the record. A photo whose key is already in the log (judged, then the process
died before it was moved) is moved by that record, not judged again. Then each photo goes into
``ok/``, ``defective/``, ``review/`` or ``failed/`` under the output folder (moved, or copied, or
left where it is with a JSON sidecar), a sidecar with the reasons beside those in ``review/`` and
``failed/``. The record's ``source`` is the arriving file's name.

Photos are judged in chunks through the Predictor's pipeline (a backlog goes at batch speed) and
committed a batch at a time; a bad file goes to ``failed/`` and the watcher goes on; a log that
cannot take a commit leaves the photos where they are, to be tried again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from castinspect.core.io import ImageError, is_image_name, read_file
from castinspect.core.records import Inspection
from castinspect.inference.predict import Predictor
from castinspect.station.log import InspectionLog, LogUnavailable, image_key

ACTIONS = ("move", "copy", "sidecar")
FOLDERS = ("ok", "defective", "review", "failed")
log = logging.getLogger("castinspect.watch")


@dataclass(frozen=True)
class WatchSettings:
    """``out``: where the decision folders go (default: the watched folder itself); ``action``:
    move, copy or sidecar; ``settle``: seconds a photo without a close notification must hold
    still; ``poll``: scan every so many seconds instead of listening (network shares); ``chunk``:
    photos judged per pass through the pipeline; ``batch``: photos per commit."""

    out: Path | None = None
    action: str = "move"
    settle: float = 0.5
    poll: float | None = None
    chunk: int = 256
    batch: int = 64

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action: one of {', '.join(ACTIONS)}, not {self.action!r}")
        if self.settle < 0 or (self.poll is not None and self.poll <= 0) or self.chunk < 1 or self.batch < 1:
            raise ValueError("watch: settle >= 0, poll > 0, chunk and batch >= 1")


@dataclass
class _Photo:
    name: str
    data: bytes | None = None
    sha: str | None = None
    error: ImageError | None = None

    @property
    def key(self) -> str:
        return f"watch:{self.sha}:{self.name}"


class Watcher:
    """Judge the photos arriving in ``folder`` with one Predictor into one InspectionLog (both the
    caller's). ``on_placed`` hears each photo's name, folder and record (with its error, for one
    not judged) once placed; MQTT goes through the log's outbox (``station.mqtt``)."""

    def __init__(self, predictor: Predictor, log_: InspectionLog, folder: str | os.PathLike,
                 settings: WatchSettings | None = None,
                 on_placed: Callable[[str, str, dict], None] | None = None) -> None:
        self.predictor, self.log = predictor, log_
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder}: no such folder to watch")
        self.settings = settings or WatchSettings()
        self.out = Path(self.settings.out or self.folder)
        self.on_placed = on_placed
        self.counts = {f: 0 for f in FOLDERS}
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._writing: set[str] = set()  # modified and not yet closed by its writer
        self._closed: set[str] = set()  # closed after writing, or renamed in: complete
        self._stat: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime_ns, since)
        self._done: dict[str, tuple[int, int]] = {}  # copied or sidecar'd and left in place

    # -- noticing photos ---------------------------------------------------------------------

    def _observer(self):
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Events(FileSystemEventHandler):
            def on_modified(self, event) -> None:
                watcher._event(event.src_path, writing=True)

            def on_closed(self, event) -> None:  # closed after writing (IN_CLOSE_WRITE)
                watcher._event(event.src_path, writing=False)

            def on_moved(self, event) -> None:  # renamed into the folder: complete
                watcher._event(event.dest_path, writing=False)

            def on_created(self, event) -> None:
                watcher._wake.set()

            def on_deleted(self, event) -> None:
                watcher._forget(os.path.basename(event.src_path))

        observer = Observer()
        observer.schedule(Events(), str(self.folder), recursive=False)
        return observer

    def _event(self, path: str, writing: bool) -> None:
        name = os.path.basename(path)
        if os.path.dirname(os.path.abspath(path)) != str(self.folder.absolute()) or not is_image_name(Path(name)):
            return
        with self._lock:
            if writing:
                self._writing.add(name)
                self._closed.discard(name)
            else:
                self._writing.discard(name)
                self._closed.add(name)
        self._wake.set()

    def _forget(self, name: str) -> None:
        with self._lock:
            self._writing.discard(name)
            self._closed.discard(name)
            self._stat.pop(name, None)

    def ready(self) -> tuple[list[str], int]:
        """The photos complete now (oldest first), and how many more are still changing or open
        for writing."""
        now = time.monotonic()
        ready, waiting = [], 0
        listening = self.settings.poll is None
        with os.scandir(self.folder) as entries:
            found = [(e.name, e.stat()) for e in entries
                     if e.is_file(follow_symlinks=False) and is_image_name(Path(e.name))]
        with self._lock:
            for name, st in found:
                stat = (st.st_size, st.st_mtime_ns)
                if self._done.get(name) == stat:
                    continue
                if listening and name in self._writing:
                    waiting += 1
                    continue
                if listening and name in self._closed:
                    ready.append((st.st_mtime_ns, name))
                    continue
                seen = self._stat.get(name)
                if seen is None or seen[:2] != stat:
                    self._stat[name] = (*stat, now)
                    waiting += 1
                elif now - seen[2] < self.settings.settle:
                    waiting += 1
                elif st.st_size > 0:
                    ready.append((st.st_mtime_ns, name))
                # else: empty and still, its writer has not begun (or never will): left alone
            present = {n for n, _ in found}
            for name in set(self._stat) - present:
                self._stat.pop(name, None)
        return [n for _, n in sorted(ready)], waiting

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, once: bool = False) -> dict[str, int]:
        """Judge what arrives until ``stop`` is set (finishing the chunk under way); with
        ``once``, the photos there now and then return. The counts per folder."""
        stop = stop or threading.Event()
        observer = None if once or self.settings.poll is not None else self._observer()
        if observer is not None:
            observer.start()  # listening before the first scan: nothing written meanwhile is missed
        if self.settings.action == "sidecar":
            self._skip_sidecarred()
        try:
            while not stop.is_set():
                names, waiting = self.ready()
                if names:
                    for start in range(0, len(names), self.settings.chunk):
                        if not self.process(names[start:start + self.settings.chunk]):
                            stop.wait(1.0)  # the log is unavailable: try again shortly
                            break
                        if stop.is_set():
                            break
                    continue
                if once and not waiting:
                    break
                self._wake.wait(self.settings.poll or (0.05 if once else 0.2))
                self._wake.clear()
        finally:
            if observer is not None:
                observer.stop()
                observer.join(5)
        return dict(self.counts)

    def process(self, names: list[str]) -> bool:
        """Judge, record and place these photos; False if the log could not take them (they stay
        where they are)."""
        photos = [self._read(n) for n in names]
        readable = [p for p in photos if p.error is None]
        recorded = self.log.find_keys([p.key for p in readable])
        for p in photos:
            if p.error is not None:
                self._place(p, self.predictor.failed(p.name, p.error).to_dict())
            elif p.key in recorded:  # judged before the process stopped, not yet placed
                self._place(p, recorded[p.key])
        todo = [p for p in readable if p.key not in recorded]
        judged = self.predictor.predict((p.data for p in todo), (p.name for p in todo), self.settings.batch)
        batch: list[tuple[_Photo, Inspection]] = []
        for photo, insp in zip(todo, judged):
            photo.data = None  # judged: the bytes go now
            batch.append((photo, insp))
            if len(batch) == self.settings.batch:
                if not self._commit(batch):
                    return False
                batch = []
        return self._commit(batch)

    def _read(self, name: str) -> _Photo:
        photo = _Photo(name)
        try:
            photo.data = read_file(self.folder / name, name)
            photo.sha = image_key(photo.data)
        except ImageError as exc:
            photo.error = exc
        return photo

    def _commit(self, batch: list[tuple[_Photo, Inspection]]) -> bool:
        judged = [(p, i) for p, i in batch if i.judged]
        try:
            taken = self.log.record([i for _, i in judged], keys=[p.key for p, _ in judged],
                                    hashes=[p.sha for p, _ in judged])
        except LogUnavailable as exc:
            log.warning("the inspection log could not take %d photos (%s); they stay for the next try",
                        len(judged), exc)
            return False
        firsts = self.log.find_keys([p.key for p, i in judged if i.id in taken]) if taken else {}
        for photo, insp in batch:
            # another watcher on the same folder was first: placed by its record
            self._place(photo, firsts[photo.key] if insp.id in taken else insp.to_dict())
        return True

    # -- placing -----------------------------------------------------------------------------

    def _place(self, photo: _Photo, about: dict) -> None:
        """Move (copy, or leave with a sidecar) a photo into its record's decision's folder
        (``failed/`` for one not judged); ``about`` is the record."""
        folder = about["decision"] if about["decision"] in FOLDERS else "failed"
        src = self.folder / photo.name
        self.counts[folder] += 1
        self._forget(photo.name)
        if self.on_placed:
            self.on_placed(photo.name, folder, about)
        try:
            if self.settings.action == "sidecar":
                _write_json(src.with_name(src.name + ".json"), {**about, "folder": folder})
                self._remember(photo.name, src)
                return
            dest_dir = self.out / folder
            dest_dir.mkdir(parents=True, exist_ok=True)
            dest = dest_dir / photo.name
            if dest.exists():
                if photo.sha is not None and dest.is_file() and image_key(dest.read_bytes()) == photo.sha:
                    if self.settings.action == "move":  # placed before the process stopped
                        src.unlink(missing_ok=True)
                    else:
                        self._remember(photo.name, src)
                    return
                dest = dest_dir / f"{src.stem}-{(about.get('id') or photo.sha or 'x')[:8]}{src.suffix}"
            if self.settings.action == "move":
                shutil.move(str(src), str(dest))
            else:
                shutil.copy2(src, dest)
                self._remember(photo.name, src)
            if folder in ("review", "failed"):
                _write_json(dest.with_name(dest.name + ".json"), about)
        except OSError as exc:  # the record stands; the file stays, left alone until it changes or a restart
            log.warning("%s: could not be placed in %s/ (%s)", photo.name, folder, exc)
            self._remember(photo.name, src)

    def _remember(self, name: str, path: Path) -> None:
        try:
            st = path.stat()
        except OSError:
            return
        with self._lock:
            self._done[name] = (st.st_size, st.st_mtime_ns)

    def _skip_sidecarred(self) -> None:
        """With sidecars the photos stay: one with its sidecar beside it is placed already."""
        for path in self.folder.iterdir():
            if is_image_name(path) and path.with_name(path.name + ".json").is_file():
                self._remember(path.name, path)


def _write_json(path: Path, content: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content, indent=1, default=str))
    os.replace(tmp, path)
