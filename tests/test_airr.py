"""AIRR rearrangement TSV outputs (repclass.io.airr), checked with the AIRR Community's `airr` package."""
import polars as pl
import pytest

from repclass.io.airr import REQUIRED_FIELDS, airr_path, airr_rearrangements, write_airr_rearrangements

airr = pytest.importorskip("airr", reason="the airr package is a test dependency: pip install -e '.[test]'")

TABLE = pl.DataFrame({
    "sample_id": ["s1", "s1", "s2"], "rank": [1, 2, 1],
    "junction_aa": ["CASSLGQETQYF", "CASSPGTGELFF", "CSARDRTGNGYTF"],
    "v_call": ["TRBV5-1*01", None, "TRBV12-3*01,TRBV12-4*01"], "j_call": ["TRBJ2-5*01", "TRBJ2-2*01", None],
    "duplicate_count": [5, 1, 2], "locus": ["TRB", "TRB", "TRB"], "sequence_id": ["a,c", None, "x"],
    "attention": [0.5, 0.25, 1.0],
})


@pytest.mark.parametrize("convention, productive, columns", [
    ("junction", True, {"junction_aa"}),
    ("cdr3", None, {"cdr3_aa"}),
])
def test_airr_rearrangements_validate(tmp_path, convention, productive, columns):
    frame = airr_rearrangements(TABLE, convention=convention, productive=productive, extra=["rank", "attention"])
    assert frame.columns[:len(REQUIRED_FIELDS)] == list(REQUIRED_FIELDS)
    assert frame.columns[-2:] == ["rank", "attention"]  # repclass's values as extra fields
    path = tmp_path / "top.airr.tsv"
    write_airr_rearrangements(frame, path)
    assert airr.validate_rearrangement(str(path))
    with open(path) as handle:  # (airr.read_rearrangement leaves its file open)
        records = list(airr.io.RearrangementReader(handle, validate=True))
    assert [r["sequence_id"] for r in records] == ["a,c", "s1_2", "x"]  # a missing id: <repertoire>_<row>
    assert [r["repertoire_id"] for r in records] == ["s1", "s1", "s2"]
    assert records[0]["duplicate_count"] == 5 and records[2]["v_call"] == "TRBV12-3*01,TRBV12-4*01"
    assert records[0]["productive"] is (True if productive else None)
    for column in columns:
        assert records[1][column] == "CASSPGTGELFF"


def test_extra_fields_may_not_shadow_airr_fields():
    with pytest.raises(ValueError, match="'locus' is an AIRR field"):
        airr_rearrangements(TABLE, extra=["locus"])


@pytest.mark.parametrize("table, expected", [
    ("out/p.attention.tsv", "out/p.attention.airr.tsv"),
    ("out/top", "out/top.airr.tsv"),
])
def test_airr_path(table, expected):
    from pathlib import Path

    assert airr_path(Path(table)) == Path(expected)


def test_predict_attention_is_also_an_airr_file_that_joins_back(tiny_model, tiny_cohort, tmp_path):
    from repclass.prediction.run import predict

    store_path, _ = tiny_cohort
    predict(tiny_model.path, [store_path], tmp_path / "p.tsv", attention_top_n=3, device="cpu")
    path = tmp_path / "p.attention.airr.tsv"
    assert airr.validate_rearrangement(str(path))
    with open(path) as handle:
        records = list(airr.io.RearrangementReader(handle, validate=True))
    plain = pl.read_csv(tmp_path / "p.attention.tsv", separator="\t")
    assert [(r["repertoire_id"], int(r["rank"]), r["junction_aa"]) for r in records] == \
        list(plain.select("sample_id", "rank", "junction_aa").iter_rows())
    # the ids are those of the input rows (tests/support/cohort.py names them <sample>_<row>); extra fields are text
    assert all(r["sequence_id"].startswith(f"{r['repertoire_id']}_") for r in records)
    assert all(r["locus"] == "TRB" and r["productive"] is True for r in records)


def test_force_replaces_only_a_repclass_airr_table_never_a_users_rearrangements(tmp_path):
    from repclass.files import output_kind

    ours = tmp_path / "ours.airr.tsv"
    theirs = tmp_path / "theirs.airr.tsv"
    theirs.write_text("sequence_id\tjunction_aa\tv_call\tj_call\nq1\tCASSF\tTRBV5-1\tTRBJ2-7\n")
    frame = airr_rearrangements(TABLE.with_columns(pl.lit(0.0).alias("logit")), extra=["rank", "attention", "logit"])
    write_airr_rearrangements(frame, ours)
    assert output_kind(ours) == "table"
    assert output_kind(theirs) is None


def test_motifs_sequences_are_also_an_airr_file_that_joins_back(tiny_model, tiny_cohort, tmp_path):
    from repclass.explain import motifs

    store_path, _ = tiny_cohort
    result = motifs(tiny_model.path, store_path, tmp_path / "motifs", top_sequences=20, n_motifs=2, ig_steps=16,
                    device="cpu", include_training=True)
    path = result.out / "sequences.airr.tsv"
    assert airr.validate_rearrangement(str(path))
    sequences = pl.read_csv(result.out / "sequences.tsv", separator="\t")
    with open(path) as handle:
        records = list(airr.io.RearrangementReader(handle, validate=True))
    assert [r["junction_aa"] for r in records] == sequences["junction_aa"].to_list()
    assert [r["repertoire_id"] for r in records] == sequences["sample_id"].to_list()
    # the input files' own sequence ids (tests/support/cohort.py names them <sample>_<row>), not invented ones
    stored = {(s, j): i for s, j, i in _stored_ids(store_path)}
    assert [r["sequence_id"] for r in records] == [stored[(r["repertoire_id"], r["junction_aa"])] for r in records]


def _stored_ids(store_path):
    from repclass.io.store import Store

    store = Store.open(store_path)
    for sample_id in store.sample_ids:
        table = store.read(sample_id, ["junction_aa", "sequence_id"])
        for junction, sequence_id in table.iter_rows():
            yield sample_id, junction, sequence_id


def test_example_data_repertoires_are_valid_airr_files(tmp_path):
    """example_data/ is a `repclass simulate` cohort; its README and the main README call its
    repertoires AIRR (one file checked: they are written by one command)."""
    import gzip

    from support.files import EXAMPLE_DATA

    plain = tmp_path / "sample_01.tsv"
    plain.write_bytes(gzip.decompress((EXAMPLE_DATA / "repertoires" / "sample_01.tsv.gz").read_bytes()))
    assert airr.validate_rearrangement(str(plain))
    with open(plain) as handle:
        header = handle.readline().rstrip("\n").split("\t")
    assert header[:len(REQUIRED_FIELDS)] == list(REQUIRED_FIELDS) and "repertoire_id" in header
