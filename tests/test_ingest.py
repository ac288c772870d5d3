import hashlib
import logging
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

from support.files import write_airr
from repclass import combine, ingest
from repclass.errors import OutputExistsError, RepclassError, StoreError
from repclass.io.store import STORE_FORMAT_VERSION, Store


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



# ---- store format versions: 3 writes Categorical gene calls, 2 (committed) still loads ----------
OLD_STORE = Path(__file__).resolve().parent / "data" / "store_v2"  # written by repclass 664163d


def test_new_store_writes_gene_calls_as_categorical(small_cohort, tmp_path):
    sheet, folder = small_cohort
    store = ingest(sheet, tmp_path / "store", [folder])
    assert store.format_version == STORE_FORMAT_VERSION == 3
    raw = pl.read_parquet(store.repertoire_path("s1"))
    assert {c: raw.schema[c] for c in ("v_call", "j_call", "locus")} == dict.fromkeys(("v_call", "j_call", "locus"),
                                                                                    pl.Categorical)
    # every reader gets strings, whichever version wrote the store
    table = store.read("s1")
    assert table.schema["v_call"] == table.schema["locus"] == pl.String
    assert table["v_call"].to_list() == ["TRBV5-1*01", "TRBV7-9*01"]


def test_format_2_store_loads_and_says_its_version(tmp_path, caplog):
    copy = tmp_path / "old.store"  # a fresh path: the version is logged once per store and process
    shutil.copytree(OLD_STORE, copy)
    with caplog.at_level(logging.INFO, logger="repclass"):
        store = Store.open(copy)
        Store.open(copy)
    said = [r.getMessage() for r in caplog.records if "store format version" in r.getMessage()]
    assert said == [f"{copy}: store format version 2 (an older format, read as it is; this repclass writes "
                    "version 3)"]
    store.verify()
    assert store.sample_ids == [f"old{i}" for i in range(1, 7)] and store.loci() == ["TRB"]
    first = store.read("old1").row(0, named=True)
    assert first == {"junction_aa": "CFPCGLWQDVENWCTF", "v_call": "TRBV7-9*01", "j_call": "TRBJ2-5*01",
                     "duplicate_count": 8, "locus": "TRB", "c_call": "TRBC1,TRBC2", "sequence_id": "old1_0,old1_dup"}


def test_format_2_store_trains_and_predicts(tmp_path, monkeypatch):
    from repclass.config import TrainConfig
    from repclass.prediction.run import predict
    from repclass.training.loop import train

    # the training-curve figure is most of a 4-update run's time and reads nothing from the store
    monkeypatch.setattr("repclass.plot.plot_training_curve", lambda *args, **kwargs: None)
    train(OLD_STORE, tmp_path / "model", targets=["status"], device="cpu",
          config=TrainConfig(max_updates=2, eval_every=2, sequences_per_bag=100, seed=0))
    result = predict(tmp_path / "model", [OLD_STORE], tmp_path / "p.tsv", attention_top_n=2)
    assert result.table["sample_id"].to_list() == [f"old{i}" for i in range(1, 7)]
    attention = pl.read_csv(tmp_path / "p.attention.tsv", separator="\t")
    assert attention.height == 12 and attention["v_call"].str.starts_with("TRBV").all()


def test_combine_of_an_old_and_a_new_store_is_all_new(small_cohort, tmp_path):
    sheet, folder = small_cohort
    new = ingest(sheet, tmp_path / "new", [folder])
    combined = combine([OLD_STORE, new.path], tmp_path / "both")
    assert combined.format_version == 3 and len(combined) == 9
    combined.verify()
    raw = pl.read_parquet(combined.repertoire_path("old1"))
    assert raw.schema["v_call"] == raw.schema["c_call"] == pl.Categorical
    assert combined.read("old1").equals(Store.open(OLD_STORE).read("old1"))
    assert combined.read("s1").equals(new.read("s1"))
