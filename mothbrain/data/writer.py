"""The data set on disk, written as its rows are decided: a `datasets` DatasetDict folder.

Preprocess hands over each batch's train and held-out rows as Arrow tables, in stream order;
`DatasetWriter` appends them to one Arrow file per split (datasets' own `ArrowWriter`, the format
`save_to_disk` writes) in a temp folder and feeds them to `DatasetHash`. So no split is ever whole
in memory, and the fingerprint is known the moment the last row is written. `finish` then writes
the small JSON files `load_from_disk` reads and renames the folder to datasets/<fingerprint>
(or drops it when that folder already exists: the same rows and config).

The fingerprint hashes the columns as Arrow holds them (each string's length, then the bytes, in
separate streams), so it depends on the rows only, never on how they were chunked.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from mothbrain.core.atomic import replace_folder, write_json_atomically
from mothbrain.errors import MothError

SPLITS = ("train", "heldout")
COLUMNS = ("prompt", "completion", "source", "sample_type", "doc_id", "concepts", "recent")
DATA_FILE = "data-00000-of-00001.arrow"  # the name save_to_disk gives a one-shard split
META_NAME = "mothbrain.json"


def features():
    from datasets import Features, List, Value

    return Features(
        {
            "prompt": Value("string"),
            "completion": Value("string"),
            "source": Value("string"),
            "sample_type": Value("string"),
            "doc_id": Value("string"),
            "concepts": List(Value("string")),
            "recent": Value("bool"),
        }
    )


def _hasher():
    """xxh3-128: the rows of a large data set are hashed in a fraction of sha256's time."""
    from xxhash import xxh3_128

    return xxh3_128()


class DatasetHash:
    """A 128-bit hash of both splits' rows and the settings, fed table by table (short hex)."""

    def __init__(self, settings: dict[str, Any]):
        self._head = json.dumps(settings, sort_keys=True, default=str).encode()
        self._parts: dict[str, Any] = {}
        self.rows = dict.fromkeys(SPLITS, 0)  # rows hashed per split

    def _part(self, *key: str):
        name = "\0".join(key)
        if name not in self._parts:
            self._parts[name] = _hasher()
        return self._parts[name]

    def _strings(self, split: str, name: str, arr) -> None:
        if not len(arr):
            return  # an empty array may have no buffers at all
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
        self._part(split, name, "lengths").update(np.diff(offsets).astype("<i8").tobytes())
        data = arr.buffers()[2]
        if data is not None and offsets[-1] > offsets[0]:
            self._part(split, name, "bytes").update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])

    def update(self, split: str, table) -> None:
        self.rows[split] += len(table)
        for name in COLUMNS:
            for chunk in table.column(name).chunks:
                if not len(chunk):
                    continue
                if name == "concepts":  # list<string>: the list lengths, then the strings
                    offsets = np.asarray(chunk.offsets)
                    self._part(split, name, "lists").update(np.diff(offsets).astype("<i8").tobytes())
                    self._strings(split, name, chunk.values[int(offsets[0]) : int(offsets[-1])])
                elif name == "recent":
                    self._part(split, name, "bytes").update(
                        chunk.to_numpy(zero_copy_only=False).astype(np.uint8).tobytes()
                    )
                else:
                    self._strings(split, name, chunk)

    def hexdigest(self) -> str:
        h = _hasher()
        h.update(self._head)
        h.update(json.dumps(self.rows, sort_keys=True).encode())
        for name in sorted(self._parts):
            h.update(b"\0" + name.encode() + b"\0" + self._parts[name].digest())
        return h.hexdigest()[:16]


class DatasetWriter:
    """write(split, table) as rows are decided, then finish(fingerprint, meta) → (folder, reused);
    abort() on failure. Every OSError (a full disk) becomes one MothError naming the folder."""

    def __init__(self, root: Path, settings: dict[str, Any]):
        from datasets.arrow_writer import ArrowWriter

        self.root = root
        self.hash = DatasetHash(settings)
        self.rows = self.hash.rows  # rows written per split (every written row is hashed)
        self._remove_stale_temps()
        self.tmp = root / f".tmp-build-{os.getpid()}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._features = features()
        self._writers = {}
        try:
            for split in SPLITS:
                (self.tmp / split).mkdir(parents=True)
                self._writers[split] = ArrowWriter(features=self._features, path=str(self.tmp / split / DATA_FILE))
        except OSError as exc:
            self.abort()
            raise self._error(exc) from None

    def write(self, split: str, table) -> None:
        if not len(table):
            return
        self.hash.update(split, table)
        try:
            self._writers[split].write_table(table)
        except OSError as exc:
            self.abort()
            raise self._error(exc) from None

    def finish(self, fingerprint: str, meta: dict[str, Any]) -> tuple[Path, bool]:
        """Close the files, add what load_from_disk reads, and move the folder to root/<fingerprint>."""
        final = self.root / fingerprint
        try:
            for w in self._writers.values():
                w.finalize()
                w.close()
            self._writers = {}
            if (final / META_NAME).is_file() and (final / "dataset_dict.json").is_file():
                self.abort()
                return final, True  # the same rows and config: already saved
            for split in SPLITS:
                self._describe(split, f"{fingerprint}-{split}")
            (self.tmp / "dataset_dict.json").write_text(json.dumps({"splits": list(SPLITS)}), encoding="utf-8")
            write_json_atomically(self.tmp / META_NAME, meta)
            # An incomplete folder already there (not ours, or damaged by hand) is replaced, never merged.
            replace_folder(self.tmp, final)
        except OSError as exc:
            self.abort()
            raise self._error(exc) from None
        return final, False

    def _describe(self, split: str, fingerprint: str) -> None:
        """state.json and dataset_info.json as Dataset.save_to_disk writes them, from the Dataset that
        load_from_disk will build over the file (memory-mapped: nothing is read or copied)."""
        from dataclasses import asdict

        from datasets import Dataset, DatasetInfo

        folder = self.tmp / split
        ds = Dataset.from_file(str(folder / DATA_FILE), info=DatasetInfo(features=self._features))
        state = {
            key: ds.__dict__[key]
            for key in ("_format_columns", "_format_kwargs", "_format_type", "_output_all_columns")
        }
        state.update(_fingerprint=fingerprint, _split=None, _data_files=[{"filename": DATA_FILE}])
        (folder / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        info = asdict(ds.info)
        (folder / "dataset_info.json").write_text(
            json.dumps({k: info[k] for k in sorted(info)}, indent=2), encoding="utf-8"
        )
        del ds  # its memory map

    def abort(self) -> None:
        for w in self._writers.values():
            try:
                w.close()
            except Exception:  # noqa: BLE001 - already failing: the folder goes anyway
                pass
        self._writers = {}
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _error(self, exc: OSError) -> MothError:
        return MothError(
            f"cannot write the data set under {self.root} ({exc.strerror or exc}); free disk space or "
            "fix permissions there, then run `mothbrain preprocess` again (nothing earlier was changed)"
        )

    def _remove_stale_temps(self) -> None:
        """Temp folders left by a crashed run (their process is gone) are removed."""
        for d in self.root.glob(".tmp-*"):
            try:
                os.kill(int(d.name.rsplit("-", 1)[-1]), 0)
                continue  # its process is alive: still being written
            except ProcessLookupError:
                shutil.rmtree(d, ignore_errors=True)
            except (ValueError, PermissionError, OSError):
                continue


def fingerprint(tables: dict[str, Any], settings: dict[str, Any]) -> str:
    """The DatasetHash of whole tables (what the writer computes as it goes)."""
    h = DatasetHash(settings)
    for split in SPLITS:
        h.update(split, tables[split])
    return h.hexdigest()
