"""What `predict` and `motifs` are given, resolved once for both: a trained model (one model file,
a model folder, or the fold models of a `--folds` folder) and the repertoires to score (one store,
or repertoire files read with the training store's rules).

The checks live here, so the two commands refuse the same inputs with the same words: a store
together with other inputs, a folder that is not a store, two files giving the same sample id,
a store the model does not fit (locus, convention).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import polars as pl

from repclass.errors import RepclassError, UsageError
from repclass.io.formats import ColumnOverrides
from repclass.io.reader import ReadOptions, read_repertoire
from repclass.io.sheet import file_stem
from repclass.io.store import MANIFEST_NAME, Store, as_strings, table_loci
from repclass.model.checkpoint import check_locus, check_store_fits, resolve_model_path
from repclass.prediction.ensemble import fold_model_paths, load_models

#: How one input repertoire is read: read(columns) -> its table (columns None: every stored column).
Reader = Callable[[list[str] | None], pl.DataFrame]


def read_options(saved: dict[str, Any], convention: str) -> ReadOptions:
    """The training store's read options as its manifest records them, in `convention`, so that raw
    files are read as the training files were; a setting an older store did not record keeps
    ReadOptions' default."""
    recorded = {f.name for f in fields(ReadOptions)} - {"convention", "overrides"}
    return ReadOptions(**{k: v for k, v in saved.items() if k in recorded}, convention=convention,
                       overrides=ColumnOverrides(**saved.get("overrides", {})))


@dataclass
class Models:
    """A model resolved and loaded once: [(network, ModelInfo)] for one model or every fold."""

    paths: list[Path]  # the model file(s), in fold order
    folds: bool  # a cross-validation folder: `paths` are its fold models
    loaded: list[tuple[Any, Any]]

    @property
    def info(self) -> Any:
        """The first (or only) model's description: targets, convention and read options agree across folds."""
        return self.loaded[0][1]


def load_deeprc(model: str | Path, device: Any) -> Models:
    """One DeepRC model file or folder, or every fold of a `--folds` folder (checked to agree)."""
    folds = fold_model_paths(model)
    paths = folds or [resolve_model_path(model)]
    return Models(paths, bool(folds), load_models(model, device))


@dataclass
class Inputs:
    """The repertoires to score: a store, or repertoire files (sample ids: the file names' stems)."""

    store: Store | None
    files: list[Path]

    def sources(self, info: Any, samples: Sequence[str] | None = None, allow_other_locus: bool = False
                ) -> list[tuple[str, Reader]]:
        """[(sample id, read)]: a store's repertoires (only `samples` when given), or each file read
        with the training store's rules; one file's table is held at a time."""
        if self.store is not None:
            store = self.store
            ids = store.sample_ids
            if samples:
                unknown = [s for s in samples if s not in set(ids)]
                if unknown:
                    raise UsageError(f"{store.path}: no sample(s) {', '.join(unknown)} in the store")
                ids = [s for s in ids if s in set(samples)]
            return [(i, (lambda columns, i=i: store.read(i, columns))) for i in ids]
        options = read_options(info.read_options, info.junction_convention)
        # One table held for all the files: the one being scored (scoring and the export read it twice).
        memo: dict[Path, pl.DataFrame] = {}
        sources = []
        for path in self.files:
            def read(columns: list[str] | None, path: Path = path) -> pl.DataFrame:
                if path not in memo:
                    memo.clear()
                    memo[path] = as_strings(read_repertoire(path, options).table)
                    if getattr(info, "locus", None):  # reading the loci costs a pass over the table
                        check_locus(info, table_loci(memo[path]), path, allow_other_locus)
                table = memo[path]
                if table.height == 0:
                    raise RepclassError(f"{path}: no sequences left after filtering with the training store's rules")
                return table if columns is None else table.select(columns)

            sources.append((file_stem(path.name), read))
        return sources

    def as_store(self, info: Any, folder: Path | None) -> Store:
        """The store itself, or the files ingested into a store in `folder` with the training store's
        rules (productive filter, anchors, locus, convention), for passes that need a store."""
        if self.store is not None:
            return self.store
        if folder is None:
            raise ValueError("repertoire files need a folder for their store")
        from repclass.io.ingestion import ingest

        sheet = folder / "samples.tsv"
        sheet.write_text("sample_id\n" + "".join(f"{file_stem(p.name)}\n" for p in self.files))
        return ingest(sheet, folder / "inputs.store", self.files,
                      options=read_options(info.read_options, info.junction_convention))


def resolve_inputs(inputs: "str | Path | Store | Sequence[str | Path]", info: Any | None = None,
                   allow_other_locus: bool = False, what: str = "score") -> Inputs:
    """A store (opened; checked against the model's `info` when given) or repertoire files
    (checked: files, not folders, and one sample id each). `what` words the empty-input error."""
    given = [inputs] if isinstance(inputs, (str, Path, Store)) else list(inputs)
    if not given:
        raise UsageError(f"give a store or repertoire files to {what}")
    if len(given) == 1 and (isinstance(given[0], Store) or (Path(given[0]) / MANIFEST_NAME).exists()):
        store = given[0] if isinstance(given[0], Store) else Store.open(given[0])
        if info is not None:
            check_store_fits(info, store, allow_other_locus)
        return Inputs(store, [])
    paths = [Path(p) for p in given]
    seen: dict[str, Path] = {}
    for path in paths:
        if path.is_dir() and (path / MANIFEST_NAME).exists():
            raise UsageError(f"{path}: a store, given together with other inputs; score a store on its own, or "
                             "repertoire files without a store")
        if path.is_dir():
            raise UsageError(f"{path}: a folder but not a store (no {MANIFEST_NAME}); give the store or the files")
        sample_id = file_stem(path.name)
        if sample_id in seen:
            raise UsageError(f"{path} and {seen[sample_id]} give the same sample id {sample_id!r}")
        seen[sample_id] = path
    return Inputs(None, paths)
