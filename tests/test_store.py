"""repclass.io.store: a store opens only when complete and of a known format, and gives back its
repertoires."""

import pytest

from repclass import ingest
from repclass.errors import StoreError
from repclass.io.store import Store


def test_incomplete_store_is_not_opened(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(StoreError, match="manifest.json is missing"):
        Store.open(tmp_path / "half")


def test_store_format_version_is_checked(small_cohort, tmp_path):
    import json
    sheet, folder = small_cohort
    out = ingest(sheet, tmp_path / "store", [folder]).path
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format_version"] = 99
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreError, match="format version 99 is not supported"):
        Store.open(out)


def test_store_iterates_its_repertoires(small_cohort, tmp_path):
    sheet, folder = small_cohort
    store = ingest(sheet, tmp_path / "store", [folder])
    tables = dict(store.iter_tables(["junction_aa"]))
    assert list(tables) == ["s1", "s2", "s3"]
    assert tables["s2"].columns == ["junction_aa"] and tables["s2"].height == 1
    assert store.n_sequences() == {"s1": 2, "s2": 1, "s3": 1}
