import hashlib
import os

import polars as pl
import pytest

from support.files import write_airr
from repclass import combine, ingest
from repclass.errors import OutputExistsError, RepclassError, StoreError
from repclass.io.store import Store


def _digests(folder):
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ingest_writes_a_store(small_cohort, tmp_path):
    sheet, folder = small_cohort
    store = ingest(sheet, tmp_path / "store", [folder])
    assert store.sample_ids == ["s1", "s2", "s3"]
    assert store.label_columns == ["status", "age"]
    assert store.labels("status") == {"s1": "+", "s2": "-", "s3": "+"}
    assert store.junction_convention == "junction"
    s2 = store.samples.filter(pl.col("sample_id") == "s2").row(0, named=True)
    assert (s2["rows_read"], s2["n_sequences"], s2["dropped_invalid_residue"]) == (2, 1, 1)
    assert s2["source_file"] == "s2.tsv.gz"
    # anyone can open the repertoire files
    table = pl.read_parquet(store.path / "repertoires" / "s1.parquet")
    assert table.columns == ["junction_aa", "v_call", "j_call", "duplicate_count", "locus", "sequence_id"]
    # AIRR fields kept: every sequence_id of a merged clonotype (issue 13), in file order
    assert table.rows() == [("CASSLGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 5, "TRB", "a,c"),
                            ("CASSPGTGELFF", "TRBV7-9*01", "TRBJ2-2*01", 1, "TRB", "b")]
    store.verify()


def test_distinct_samples_store_distinct_sequences(small_cohort, tmp_path):
    # The original DeepRC loader mapped every sample to repertoire 0; this pins the opposite.
    sheet, folder = small_cohort
    store = ingest(sheet, tmp_path / "store", [folder])
    tables = {sid: set(store.read(sid)["junction_aa"].to_list()) for sid in store.sample_ids}
    assert tables == {"s1": {"CASSLGQETQYF", "CASSPGTGELFF"}, "s2": {"CSARDRTGNGYTF"}, "s3": {"CAWSVGQGAYEQYF"}}


def test_same_inputs_give_byte_identical_store(small_cohort, tmp_path):
    sheet, folder = small_cohort
    a = ingest(sheet, tmp_path / "a", [folder]).path
    b = ingest(sheet, tmp_path / "b", [folder]).path
    assert _digests(a) == _digests(b)


def test_scatter_then_combine_equals_one_ingest(small_cohort, tmp_path):
    sheet, folder = small_cohort
    whole = ingest(sheet, tmp_path / "whole", [folder]).path
    parts = [ingest(sheet, tmp_path / f"part_{s}", [folder], samples=[s]).path for s in ("s3", "s1", "s2")]
    combined = combine(parts, tmp_path / "combined").path
    assert _digests(combined) == _digests(whole)


def test_combine_refuses_overlaps_and_mixed_options(small_cohort, tmp_path):
    sheet, folder = small_cohort
    a = ingest(sheet, tmp_path / "a", [folder], samples=["s1"]).path
    with pytest.raises(StoreError, match="'s1' is in both"):
        combine([a, a], tmp_path / "c")
    from repclass.io.reader import ReadOptions
    b = ingest(sheet, tmp_path / "b", [folder], samples=["s2"], options=ReadOptions(convention="cdr3")).path
    with pytest.raises(StoreError, match="junction_convention"):
        combine([a, b], tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_existing_output_needs_force(small_cohort, tmp_path):
    sheet, folder = small_cohort
    out = tmp_path / "store"
    ingest(sheet, out, [folder])
    with pytest.raises(OutputExistsError, match="--force"):
        ingest(sheet, out, [folder])
    ingest(sheet, out, [folder], samples=["s1"], force=True)
    assert Store.open(out).sample_ids == ["s1"]


def test_failed_ingest_leaves_nothing(small_cohort, tmp_path):
    sheet, folder = small_cohort
    write_airr(folder / "s3.tsv", [["a", "CASSLGQETQYF", "TRBV5-1", "TRBJ2-5", "lots", "T", "TRB"]])
    with pytest.raises(RepclassError, match="s3.tsv, line 2"):
        ingest(sheet, tmp_path / "store", [folder])
    assert sorted(os.listdir(tmp_path)) == ["reps", "samples.tsv"]


def test_failed_ingest_with_force_keeps_the_old_store(small_cohort, tmp_path):
    sheet, folder = small_cohort
    out = tmp_path / "store"
    ingest(sheet, out, [folder])
    before = _digests(out)
    (folder / "s2.tsv.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(RepclassError):
        ingest(sheet, out, [folder], force=True)
    assert _digests(out) == before


def test_empty_repertoire_is_an_error_unless_allowed(small_cohort, tmp_path):
    sheet, folder = small_cohort
    write_airr(folder / "s2.tsv.gz", [["a", "CASS*GQETQYF", "TRBV5-1", "TRBJ2-5", 1, "F", "TRB"]], compress=True)
    with pytest.raises(RepclassError, match="no sequences left after filtering.*--allow-empty"):
        ingest(sheet, tmp_path / "store", [folder])
    store = ingest(sheet, tmp_path / "store", [folder], allow_empty=True)
    assert store.sample_ids == ["s1", "s3"]


def test_mixed_conventions_are_refused(small_cohort, tmp_path):
    sheet, folder = small_cohort
    (folder / "s3.tsv").write_text("cdr3_aa\tduplicate_count\nASSLGQETQY\t1\n")
    with pytest.raises(StoreError, match="different junction conventions.*--convention cdr3"):
        ingest(sheet, tmp_path / "store", [folder])
    from repclass.io.reader import ReadOptions
    store = ingest(sheet, tmp_path / "store", [folder], options=ReadOptions(convention="cdr3"))
    assert store.read("s3")["junction_aa"].to_list() == ["ASSLGQETQY"]


def test_airr_repertoire_id_sheet_is_accepted_and_kept(small_cohort, tmp_path):
    _, folder = small_cohort
    sheet = tmp_path / "repertoires.tsv"
    sheet.write_text("repertoire_id\tstatus\ns1\t+\ns2\t-\ns3\t+\n")
    whole = ingest(sheet, tmp_path / "whole", [folder])
    assert whole.sample_ids == ["s1", "s2", "s3"] and whole.id_column == "repertoire_id"
    parts = [ingest(sheet, tmp_path / f"part_{s}", [folder], samples=[s]).path for s in ("s1", "s2", "s3")]
    combined = combine(parts, tmp_path / "combined")
    assert combined.id_column == "repertoire_id" and _digests(combined.path) == _digests(whole.path)
