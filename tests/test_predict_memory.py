"""predict on raw repertoire files holds one file's table at a time (issue 14: each reader had its
own memo, so every file read stayed in memory until the end of the run)."""
import gc
import weakref
from types import SimpleNamespace

from repclass.prediction import inputs as prediction
from repclass.io.reader import ReadOptions


class _Table:
    """Stands in for a file's polars table; weakly referenceable, so a test sees when it is freed."""

    height = 3
    schema: dict = {}  # no Categorical column for the store-format cast to turn into strings

    def select(self, columns):
        return self


def test_raw_files_are_held_one_at_a_time(tmp_path, monkeypatch):
    alive: dict[str, weakref.ref] = {}
    reads = []

    def read_repertoire(path, options):
        table = _Table()
        alive[path.name] = weakref.ref(table)
        reads.append(path.name)
        return SimpleNamespace(table=table)

    monkeypatch.setattr(prediction, "read_repertoire", read_repertoire)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"s{i}.tsv")
        paths[-1].write_text("junction_aa\nCASSF\n")
    info = SimpleNamespace(read_options={}, junction_convention="junction")
    sources = prediction.resolve_inputs(paths).sources(info)
    for sample_id, read in sources:
        read(["junction_aa"])  # scoring
        read(None)  # the attention export reads the same file again
        gc.collect()
        assert [name for name, ref in alive.items() if ref() is not None] == [f"{sample_id}.tsv"]
    assert reads == ["s0.tsv", "s1.tsv", "s2.tsv"]  # each file read once


def test_raw_files_are_read_with_the_training_stores_options_not_restated_defaults():
    assert prediction.read_options({}, "junction") == ReadOptions(convention="junction")
    saved = {"productive_only": False, "locus": "TRB", "anchor_check": False, "convention": "auto",
             "cells_only": False, "high_confidence_only": False, "overrides": {"count": "templates"}}
    options = prediction.read_options(saved, "cdr3")
    assert (options.productive_only, options.locus, options.anchor_check, options.convention) == \
        (False, "TRB", False, "cdr3")
    assert (options.cells_only, options.high_confidence_only, options.overrides.count) == (False, False, "templates")
