"""The splits, weights and composition: batches' kept rows into the data set's files as they stream."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from mothbrain.config import Config
from mothbrain.data.format import voice_roles
from mothbrain.data.samples import ASSOCIATION_SOURCE, BatchResult, Sample
from mothbrain.data.split import unit as _unit
from mothbrain.data.tokens import token_counter
from mothbrain.data.writer import DatasetWriter
from mothbrain.data.writer import features as _features


def heldout_docs(
    keys: Iterable[tuple[str, str]], fraction: float, units: dict[tuple[str, str], float] | None = None
) -> set[tuple[str, str]]:
    """The (source, doc_id) keys held out: those whose hash falls below `fraction`.

    A document's side depends only on its own key, so adding documents never moves old ones. When
    the hash leaves the held-out side empty (tiny corpora) and there are two or more documents, the
    one with the smallest hash is held out so that eval always has something (and, symmetrically,
    one document always stays in train). `units`: the keys' hashes, when already computed.
    """
    scored = units if units is not None else {k: _unit(f"{k[0]}\0{k[1]}") for k in keys}
    if fraction <= 0 or not scored:
        return set()
    held = {k for k, u in scored.items() if u < fraction}
    if not held and len(scored) >= 2:
        held = {min(scored, key=scored.get)}
    if len(held) == len(scored) and len(scored) >= 2:
        held.discard(max(held, key=scored.get))
    return held


def repeats(weight: float, key: str) -> int:
    """How often a train sample appears under its source's weight: floor(w), +1 with probability frac(w)."""
    whole = math.floor(weight)
    if whole == weight:
        return whole  # a whole weight needs no draw (and no hash)
    return whole + (1 if _unit(key) < weight - whole else 0)


class Assembler:
    """The splits, written batch by batch as their dedup decisions come (rows in stream order, a
    weighted sample's copies side by side: the trainer shuffles), with the composition counted on
    the way. Association samples are added last, once the pairs are chosen.

    The document-level split: a document's hash decides. On a tiny corpus that hash can put every
    document on one side; `heldout_docs` then moves one. So batches are held back until both sides
    have a document (the first few batches of any real archive), and only a corpus that never gets
    there is split by the fallback at the end.
    """

    def __init__(self, cfg: Config, writer: DatasetWriter, cutoff: float):
        self.cfg, self.writer, self.cutoff = cfg, writer, cutoff
        self.pcfg = cfg.preprocess
        self.weight_of = {s.name: s.weight for s in cfg.sources}
        self.names: list[str] = []  # source names, coded in order of appearance
        self.types: list[str] = []
        self.by_source: dict[str, np.ndarray] = {}  # name → [train, heldout, tokens]
        self.by_type: dict[str, np.ndarray] = {}
        self.priority = {p.name: np.zeros(3, dtype=np.int64) for p in self.pcfg.priority_concepts}
        self.documents = self.heldout_documents = 0
        self.waiting: list[tuple[BatchResult, np.ndarray]] = []  # until both sides of the split have a document
        self.sides = [False, False]  # seen: a train document, a held-out one
        self.count, self.token_unit = token_counter(cfg)
        self.schema = _features().arrow_schema

    @staticmethod
    def _codes(values: list[str], labels: list[str]) -> np.ndarray:
        code = {n: i for i, n in enumerate(labels)}
        for v in values:
            if v not in code:
                code[v] = len(labels)
                labels.append(v)
        return np.fromiter(map(code.__getitem__, values), dtype=np.int32, count=len(values))

    def add(self, batch: BatchResult, keep: np.ndarray) -> None:
        if self.waiting is None:
            self._documents(batch, keep, None)
            return
        self.waiting.append((batch, keep))
        if self.pcfg.heldout_fraction > 0:
            for u in batch.docs["unit"]:
                self.sides[u < self.pcfg.heldout_fraction] = True
            if not all(self.sides):
                return
        self._flush_waiting(None)

    def _flush_waiting(self, held: set | None) -> None:
        waiting, self.waiting = self.waiting or [], None
        for batch, keep in waiting:
            self._documents(batch, keep, held)

    def finish_documents(self) -> None:
        """The held-back batches of a corpus whose hashes never gave both sides: heldout_docs' fallback."""
        if not self.waiting:
            self.waiting = None
            return
        units = {
            (s, d): u
            for batch, _ in self.waiting
            for s, d, u in zip(batch.docs["source"], batch.docs["doc_id"], batch.docs["unit"])
        }
        self._flush_waiting(heldout_docs(units, self.pcfg.heldout_fraction, units))

    def _documents(self, batch: BatchResult, keep: np.ndarray, held_keys: set | None) -> None:
        docs, samples = batch.docs, batch.samples
        unit = np.asarray(docs["unit"], dtype=np.float64)
        if held_keys is None:
            held_doc = unit < self.pcfg.heldout_fraction
        else:
            held_doc = np.fromiter(
                ((s, d) in held_keys for s, d in zip(docs["source"], docs["doc_id"])), dtype=bool, count=len(unit)
            )
        self.documents += len(unit)
        self.heldout_documents += int(held_doc.sum())
        recent_doc = np.asarray(docs["when"], dtype=np.float64) >= self.cutoff  # nan: never recent
        doc_of = np.asarray(samples["doc"], dtype=np.int64)
        n_of = np.asarray(samples["n"], dtype=np.int64)
        src = self._codes(docs["source"], self.names)[doc_of]
        source, raw_id = docs["source"], docs["doc_id"]
        self._rows(
            prompt=samples["prompt"],
            completion=samples["completion"],
            doc_id=samples["doc_id"],
            concepts=samples["concepts"],
            src=src,
            typ=self._codes(samples["sample_type"], self.types),
            tokens=np.asarray(samples["tokens"], dtype=np.int64),
            recent=recent_doc[doc_of],
            held=held_doc[doc_of],
            keep=keep,
            order=lambda i: (source[doc_of[i]], raw_id[doc_of[i]], int(n_of[i])),
        )

    def add_associations(self, assoc: list[Sample], held_pairs: set[tuple[str, str]]) -> None:
        import pyarrow as pa

        tokens = [
            n
            for i in range(0, len(assoc), 1024)
            for n in self.count([s.prompt + s.completion for s in assoc[i : i + 1024]])
        ]
        held_ids = {f"pair:{a}|{b}" for a, b in held_pairs}
        self._rows(
            prompt=pa.array([s.prompt for s in assoc], pa.string()),
            completion=pa.array([s.completion for s in assoc], pa.string()),
            doc_id=pa.array([s.doc_id for s in assoc], pa.string()),
            concepts=pa.array([s.concepts for s in assoc], pa.list_(pa.string())),
            src=self._codes([ASSOCIATION_SOURCE] * len(assoc), self.names),
            typ=self._codes(["association"] * len(assoc), self.types),
            tokens=np.asarray(tokens, dtype=np.int64),
            recent=np.array([s.recent for s in assoc], dtype=bool),
            held=np.array([s.doc_id in held_ids for s in assoc], dtype=bool),
            keep=np.ones(len(assoc), dtype=bool),
            order=lambda i: assoc[i].order,
        )

    def _rows(
        self,
        *,
        prompt,
        completion,
        doc_id,
        concepts,
        src: np.ndarray,
        typ: np.ndarray,
        tokens: np.ndarray,
        recent: np.ndarray,
        held: np.ndarray,
        keep: np.ndarray,
        order,
    ) -> None:
        """One batch's rows into the splits. Source weights on the train split: floor(w) copies,
        one more with probability frac(w) (a stable hash of the sample's order key)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not len(keep):
            return
        weight = np.array([self.weight_of.get(n, 1.0) for n in self.names])[src]
        reps = np.floor(weight).astype(np.int64)
        for i in np.flatnonzero(keep & ~held & (weight != np.floor(weight))).tolist():
            reps[i] = repeats(float(weight[i]), f"{self.pcfg.seed}|{self.names[src[i]]}|{order(i)}")
        train_rows = np.flatnonzero(keep & ~held)
        train_idx = np.repeat(train_rows, reps[train_rows])
        held_idx = np.flatnonzero(keep & held)

        copies = np.bincount(train_idx, minlength=len(keep))
        held_mask = (keep & held).astype(np.int64)
        for codes, labels, into in ((src, self.names, self.by_source), (typ, self.types, self.by_type)):
            counts = np.stack(
                [
                    np.bincount(codes, weights=copies, minlength=len(labels)),
                    np.bincount(codes, weights=held_mask, minlength=len(labels)),
                    np.bincount(codes, weights=copies * tokens, minlength=len(labels)),
                ]
            ).astype(np.int64)
            for i in np.flatnonzero(counts[0] + counts[1]).tolist():
                into[labels[i]] = into.get(labels[i], 0) + counts[:, i]
        if self.priority and len(concepts):
            parents = np.asarray(pc.list_parent_indices(concepts))
            values = pc.list_flatten(concepts)
            for name, row in self.priority.items():
                rows = parents[np.asarray(pc.equal(values, name).fill_null(False))]
                row += [copies[rows].sum(), held_mask[rows].sum(), (copies[rows] * tokens[rows]).sum()]

        names, types = pa.array(self.names, pa.string()), pa.array(self.types, pa.string())
        for split, idx in (("train", train_idx), ("heldout", held_idx)):
            if len(idx):
                rows = pa.array(idx)
                columns = {
                    "prompt": prompt.take(rows),
                    "completion": completion.take(rows),
                    "doc_id": doc_id.take(rows),
                    "concepts": concepts.take(rows),
                    "source": names.take(pa.array(src[idx])),
                    "sample_type": types.take(pa.array(typ[idx])),
                    "recent": pa.array(recent[idx], pa.bool_()),
                }
                self.writer.write(split, pa.table([columns[name] for name in self.schema.names], schema=self.schema))

    def summary(self) -> tuple[dict, dict, list[str]]:
        """(composition, priority concepts, warnings for concepts under their minimum)."""

        def table(counts: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
            return {
                k: {"train": int(v[0]), "heldout": int(v[1]), "tokens": int(v[2])} for k, v in sorted(counts.items())
            }

        by_source = table(self.by_source)
        for name, row in by_source.items():
            row["weight"] = float(self.weight_of.get(name, 1.0))
        composition = {
            "token_unit": self.token_unit,
            "by_source": by_source,
            "by_type": table(self.by_type),
            "total_tokens": int(sum(v[2] for v in self.by_source.values())),
        }
        priority, warnings = {}, []
        for pc_ in self.pcfg.priority_concepts:
            train, heldout, tokens = (int(x) for x in self.priority[pc_.name])
            ok = train >= pc_.min_samples
            priority[pc_.name] = {
                "train": train,
                "heldout": heldout,
                "tokens": tokens,
                "min_samples": pc_.min_samples,
                "ok": ok,
            }
            if not ok:
                warnings.append(
                    f"priority concept '{pc_.name}' is in {train} training samples, under its "
                    f"minimum of {pc_.min_samples}: add material that mentions it, or aliases in "
                    "preprocess.priority_concepts"
                )
        return composition, priority, warnings


def voice_warnings(cfg: Config, voices: dict[str, list]) -> list[str]:
    """A source with turns but no voice turn at all is almost always a voice_roles mistake."""
    turns = {k: v[0] for k, v in voices.items()}
    voice = {k: v[1] for k, v in voices.items()}
    seen = {k: v[2] for k, v in voices.items()}
    sources = {s.name: s for s in cfg.sources}
    out = []
    for name in sorted(turns):
        if not voice[name]:
            roles = sorted(voice_roles(cfg, sources.get(name)))
            common = ", ".join(s for s, _ in seen[name].most_common(6))
            out.append(
                f"source '{name}' has no turns by a voice role {roles} (speakers seen: {common}): set "
                f"voice_roles on the source (or preprocess.voice_roles)"
            )
    return out
