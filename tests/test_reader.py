
import polars as pl
import pytest

from support.files import PUBLIC_DATA, write_airr, write_table
from repclass.errors import InputFileError, UsageError
from repclass.io.reader import ReadOptions, read_repertoire


def test_merges_identical_rows_and_counts_drops(small_cohort):
    _, folder = small_cohort
    read = read_repertoire(folder / "s1.tsv")
    assert read.table.columns == ["junction_aa", "v_call", "j_call", "duplicate_count", "locus", "sequence_id"]
    assert read.table.rows() == [("CASSLGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 5, "TRB", "a,c"),
                                 ("CASSPGTGELFF", "TRBV7-9*01", "TRBJ2-2*01", 1, "TRB", "b")]
    assert read.rows_read == 4
    assert read.dropped["non_productive"] == 1
    assert read.n_templates == 6


def test_missing_count_is_one_and_partial_junctions_dropped(small_cohort):
    _, folder = small_cohort
    read = read_repertoire(folder / "s3.tsv")
    assert read.table.rows() == [("CAWSVGQGAYEQYF", "TRBV30*01", "TRBJ2-7*01", 1, "TRB", "a")]
    assert read.dropped["no_anchor"] == 1
    no_check = read_repertoire(folder / "s3.tsv", ReadOptions(anchor_check=False))
    assert no_check.n_sequences == 2


def test_invalid_residues_dropped_and_lowercase_accepted(tmp_path):
    path = write_airr(tmp_path / "a.tsv", [
        ["a", "cassLGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 1, "T", "TRB"],
        ["b", "CASS_GQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 1, "T", "TRB"],
        ["c", "CASSBGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 1, "T", "TRB"],
        ["d", None, "TRBV5-1*01", "TRBJ2-5*01", 1, "T", "TRB"],
    ])
    read = read_repertoire(path)
    assert read.table["junction_aa"].to_list() == ["CASSLGQETQYF"]
    assert read.dropped["invalid_residue"] == 2
    assert read.dropped["missing_junction"] == 1


def test_cdr3_convention_strips_anchors(small_cohort):
    _, folder = small_cohort
    read = read_repertoire(folder / "s1.tsv", ReadOptions(convention="cdr3"))
    assert read.convention == "cdr3"
    assert read.table["junction_aa"].to_list() == ["ASSLGQETQY", "ASSPGTGELF"]


def test_cdr3_file_cannot_become_junctions(tmp_path):
    path = write_table(tmp_path / "a.tsv", ["cdr3_aa"], [["ASSLGQETQY"]])
    assert read_repertoire(path).convention == "cdr3"
    with pytest.raises(UsageError, match="--convention cdr3"):
        read_repertoire(path, ReadOptions(convention="junction"))


def test_locus_filter_uses_locus_column_or_gene_names(tmp_path):
    rows = [["a", "CASSLGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 1, "T", "TRB"],
            ["b", "CAVRDSNYQLIW", "TRAV1-2*01", "TRAJ33*01", 1, "T", "TRA"]]
    with_column = write_airr(tmp_path / "a.tsv", rows)
    read = read_repertoire(with_column, ReadOptions(locus="TRA"))
    assert read.table["junction_aa"].to_list() == ["CAVRDSNYQLIW"]
    assert read.dropped["locus"] == 1
    without = write_table(tmp_path / "b.tsv", ["junction_aa", "v_call"], [[r[1], r[2]] for r in rows])
    assert read_repertoire(without, ReadOptions(locus="TRB")).table["junction_aa"].to_list() == ["CASSLGQETQYF"]


def test_locus_spellings_are_one_locus_and_rows_of_another_locus_that_are_dropped_do_not_count(tmp_path):
    rows = [["a", "CASSLGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 1, "T", "trb"],
            ["b", "CASSPGTGELFF", "TRBV7-9*01", "TRBJ2-2*01", 1, "T", " TRB"],
            ["c", "CAVRDSNYQLIW", "TRAV1-2*01", "TRAJ33*01", 1, "F", "TRA"],  # non-productive: dropped first
            ["d", "CASSLGQETQYF", "unresolved", "TRBJ2-5*01", 1, "T", "NA"]]
    read = read_repertoire(write_airr(tmp_path / "a.tsv", rows))
    assert read.table["locus"].to_list() == ["TRB"] * 3
    assert read.table["v_call"].to_list() == ["TRBV5-1*01", "TRBV7-9*01", None]
    assert read.n_unresolved_rows == 0  # a null spelling is not an unresolved gene call
    only_null = read_repertoire(write_airr(tmp_path / "b.tsv", [["a", "CASSLGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 1,
                                                                 "T", "NA"]]))
    assert only_null.table["locus"].to_list() == [None]


@pytest.mark.parametrize("value, problem", [("abc", "is not a number"), ("-2", "is negative")])
def test_bad_count_names_file_line_and_value(tmp_path, value, problem):
    path = write_airr(tmp_path / "a.tsv", [["a", "CASSLGQETQYF", "TRBV5-1", "TRBJ2-5", 1, "T", "TRB"],
                                           ["b", "CASSPGTGELFF", "TRBV5-1", "TRBJ2-5", value, "T", "TRB"]])
    with pytest.raises(InputFileError) as info:
        read_repertoire(path)
    assert str(info.value).startswith(f"{path}, line 3: count '{value}'")
    assert problem in str(info.value)


def test_zero_counts_dropped_fractional_rounded(tmp_path):
    path = write_table(tmp_path / "a.tsv", ["aaSeqCDR3", "cloneCount"],
                       [["CASSLGQETQYF", "0"], ["CASSPGTGELFF", "2.6"], ["CSARDRTGNGYTF", "0.2"]])
    read = read_repertoire(path)
    assert dict(read.table.select("junction_aa", "duplicate_count").rows()) == {"CASSPGTGELFF": 3,
                                                                                "CSARDRTGNGYTF": 1}
    assert read.dropped["zero_count"] == 1


def test_unexpected_productive_value_is_an_error(tmp_path):
    path = write_airr(tmp_path / "a.tsv", [["a", "CASSLGQETQYF", "TRBV5-1", "TRBJ2-5", 1, "maybe", "TRB"]])
    with pytest.raises(InputFileError, match=r"line 2: column 'productive' has 'maybe'"):
        read_repertoire(path)


def test_nucleotide_junction_is_translated(tmp_path):
    path = write_table(tmp_path / "a.tsv", ["junction", "duplicate_count"],
                       [["TGTGCCAGCAGTTTATCGCCGGGACTGGCCTACGAGCAGTACTTC", 2], ["TGTGCCAG", 1]])
    read = read_repertoire(path)
    assert read.table["junction_aa"].to_list() == ["CASSLSPGLAYEQYF"]
    assert read.dropped["invalid_residue"] == 1  # out of frame


def test_truncated_gzip_is_a_clear_error(tmp_path):
    rows = [[f"s{i}", "CASSLGQETQYF", "TRBV5-1", "TRBJ2-5", i + 1, "T", "TRB"] for i in range(20000)]
    path = write_airr(tmp_path / "a.tsv.gz", rows, compress=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="corrupt or truncated"):
        read_repertoire(path)


def test_ragged_rows_are_a_clear_error(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text("junction_aa\tduplicate_count\nCASSLGQETQYF\t1\nCASSPGTGELFF\t1\t7\t8\n")
    with pytest.raises(InputFileError, match=str(path)):
        read_repertoire(path)


# Facts about the public files are documented in tests/data/README.md.
@pytest.mark.parametrize("name, kept_rows_at_most, templates_kept_at_most", [
    ("airr_standards_good_rearrangement.tsv", 5, 4304),
    ("airr_standards_R_rearrangement-example_quoted.tsv.gz", 78, 299),
    ("lymphoseq_adaptive_v1_TRB_CD8_CMV_369.tsv", 279, 1794),
    ("tcrdist3_adaptive_v2_Adaptive2020_first300.tsv", 252, 151083),
    ("ireceptor_mixcr_TRB-Pt-1-8_S150.clones_first500.txt", 414, 191055),
    ("tcrdist3_vdjtools_M_15_CD8_beta.clonotypes.TRB_first500.txt", 476, 214852),
])
def test_public_files_keep_productive_anchored_rows(name, kept_rows_at_most, templates_kept_at_most):
    read = read_repertoire(PUBLIC_DATA / name)
    rows_kept = read.rows_read - sum(read.dropped.values())
    assert rows_kept == kept_rows_at_most
    assert read.n_sequences <= rows_kept  # identical (junction, v, j) rows merge
    assert 0 < read.n_templates <= templates_kept_at_most
    assert read.table["junction_aa"].str.contains(r"^C[ACDEFGHIKLMNPQRSTVWY]*[FW]$").all()


def test_adaptive_gene_names_become_imgt():
    read = read_repertoire(PUBLIC_DATA / "tcrdist3_adaptive_v2_Adaptive2020_first300.tsv")
    genes = set(read.table["v_call"].drop_nulls().to_list())
    assert genes and all(g.startswith("TRBV") for g in genes)
    assert not any("TCR" in g or "-0" in g for g in genes)


def test_10x_locus_filter_on_public_contigs():
    read = read_repertoire(PUBLIC_DATA / "scirpy_10x_vdj_nextgem_hs_pbmc3_t_filtered_contig_annotations.csv.gz",
                           ReadOptions(locus="TRB"))
    assert read.n_sequences > 1000
    assert set(read.table["v_call"].drop_nulls().cast(pl.String).str.slice(0, 3).to_list()) == {"TRB"}


# ---- 10x contig tables: trusted contigs only, cells as counts, one locus per file -------------
TENX_HEADER = "barcode,is_cell,contig_id,high_confidence,chain,v_gene,j_gene,productive,cdr3,reads,umis"
TENX_ROWS = [
    "c1,true,c1_1,true,TRB,TRBV5-1,TRBJ2-5,true,CASSLGQETQYF,900,7",
    "c1,true,c1_2,true,TRB,TRBV5-1,TRBJ2-5,true,CASSLGQETQYF,100,3",  # the same clonotype again in cell c1
    "c2,true,c2_1,true,TRB,TRBV5-1,TRBJ2-5,true,CASSLGQETQYF,500,9",
    "c2,true,c2_2,true,TRB,TRBV7-9,TRBJ2-2,true,CASSPGTGELFF,400,4",
    "c3,false,c3_1,true,TRB,TRBV7-9,TRBJ2-2,true,CASSPGTGELFF,50,1",   # not a cell
    "c4,true,c4_1,false,TRB,TRBV7-9,TRBJ2-2,true,CASSPGTGELFF,60,1",   # low confidence
]


@pytest.mark.parametrize("options, counts, dropped", [
    (ReadOptions(), {"CASSLGQETQYF": 2, "CASSPGTGELFF": 1}, {"not_cell": 1, "low_confidence": 1}),
    (ReadOptions(cells_only=False), {"CASSLGQETQYF": 2, "CASSPGTGELFF": 2}, {"low_confidence": 1}),
    (ReadOptions(high_confidence_only=False), {"CASSLGQETQYF": 2, "CASSPGTGELFF": 2}, {"not_cell": 1}),
    (ReadOptions(cells_only=False, high_confidence_only=False), {"CASSLGQETQYF": 2, "CASSPGTGELFF": 3}, {}),
])
def test_10x_counts_cells_of_trusted_contigs(tmp_path, options, counts, dropped):
    path = tmp_path / "filtered_contig_annotations.csv"
    path.write_text("\n".join([TENX_HEADER, *TENX_ROWS]) + "\n")
    read = read_repertoire(path, options)
    assert dict(read.table.select("junction_aa", "duplicate_count").iter_rows()) == counts  # cells, not UMIs
    assert {k: v for k, v in read.dropped.items() if v} == dropped


def test_10x_table_of_two_loci_is_refused_without_locus():
    path = PUBLIC_DATA / "scirpy_10x_vdj_nextgem_hs_pbmc3_t_filtered_contig_annotations.csv.gz"
    with pytest.raises(InputFileError, match=r"several loci \(column 'chain': TRB 1615, TRA 1494\).*pass --locus TRB"):
        read_repertoire(path)
    read = read_repertoire(path, ReadOptions(locus="TRA"))
    assert read.dropped["locus"] == 1616  # productive TRB rows (non-productive ones count as such first)
    assert read.n_templates == 1494  # productive TRA (cell, clonotype) pairs


def test_10x_public_table_counts_cells():
    read = read_repertoire(PUBLIC_DATA / "scirpy_10x_vdj_nextgem_hs_pbmc3_t_filtered_contig_annotations.csv.gz",
                           ReadOptions(locus="TRB"))
    assert read.rows_read == 4004 and read.dropped["non_productive"] == 881
    assert read.n_templates == 1615 and read.n_sequences == 1547  # 1615 cells, 1547 distinct clonotypes


def test_10x_merged_clonotype_keeps_every_contig_id_and_c_call(tmp_path):
    path = tmp_path / "filtered_contig_annotations.csv"
    header = TENX_HEADER + ",c_gene"
    rows = [row + (",TRBC1" if i != 2 else ",TRBC2") for i, row in enumerate(TENX_ROWS)]
    path.write_text("\n".join([header, *rows]) + "\n")
    table = read_repertoire(path).table
    assert table.columns == ["junction_aa", "v_call", "j_call", "duplicate_count", "locus", "c_call", "sequence_id"]
    first = table.row(0, named=True)
    assert first["sequence_id"] == "c1_1,c1_2,c2_1" and first["duplicate_count"] == 2  # 3 contigs, 2 cells
    assert first["c_call"] == "TRBC1,TRBC2" and first["locus"] == "TRB"


def test_files_without_airr_fields_store_only_the_four_columns(tmp_path):
    path = write_table(tmp_path / "a.tsv", ["junction_aa", "v_call", "j_call", "duplicate_count"],
                       [["CASSLGQETQYF", "TRBV5-1", "TRBJ2-5", 2], ["CASSLGQETQYF", "TRBV5-1", "TRBJ2-5", 1]])
    table = read_repertoire(path).table
    assert table.rows() == [("CASSLGQETQYF", "TRBV5-1", "TRBJ2-5", 3)]



def test_frequencies_without_counts_become_counts(tmp_path, caplog):
    # the smallest non-zero frequency is one clone; 0.0000049 / 0.000002 = 2.45 rounds to 2, a
    # frequency below it never rounds to 0, a zero one is dropped, a missing one counts 1
    path = write_table(tmp_path / "f.tsv", ["junction_aa", "v_call", "frequency"], [
        ["CASSLGQETQYF", "TRBV5-1*01", 0.00002],
        ["CASSPGTGELFF", "TRBV7-9*01", 0.0000049],
        ["CASSLAGGEQFF", "TRBV5-1*01", 0.000002],
        ["CASSQDRGYEQYF", "TRBV4-1*01", 0.0],
        ["CASSFGQETQYF", "TRBV5-1*01", "NA"],
    ])
    read = read_repertoire(path)
    assert read.counts_from == "frequency"
    assert dict(zip(read.table["junction_aa"], read.table["duplicate_count"])) == {
        "CASSLGQETQYF": 10, "CASSPGTGELFF": 2, "CASSLAGGEQFF": 1, "CASSFGQETQYF": 1}
    assert read.dropped["zero_count"] == 1

    # a file with counts keeps them, however many frequency columns it has
    counted = write_table(tmp_path / "c.tsv", ["junction_aa", "duplicate_count", "frequency"],
                          [["CASSLGQETQYF", 3, 0.75], ["CASSPGTGELFF", 1, 0.25]])
    read = read_repertoire(counted)
    assert read.counts_from is None and read.table["duplicate_count"].to_list() == [3, 1]

    # ingest says so: a count in the log, the column in samples.tsv
    from repclass.io.ingestion import ingest

    (tmp_path / "samples.tsv").write_text("sample_id\tstatus\nf\t+\nc\t-\n")
    with caplog.at_level("WARNING", logger="repclass.io.ingestion"):
        store = ingest(tmp_path / "samples.tsv", tmp_path / "out.store", [path, counted])
    assert "1 of 2 repertoires have no count column" in caplog.text and "'frequency'" in caplog.text
    assert dict(zip(store.samples["sample_id"], store.samples["counts_from"])) == {"f": "frequency", "c": None}
    assert {r.sample_id: r.counts_from for r in store.records()} == {"f": "frequency", "c": ""}


def test_bad_frequency_names_its_line(tmp_path):
    path = write_table(tmp_path / "f.tsv", ["junction_aa", "frequency"], [["CASSLGQETQYF", 0.5],
                                                                          ["CASSPGTGELFF", -0.1]])
    with pytest.raises(InputFileError, match=r"line 3.*frequency '-0.1' in column 'frequency' is negative"):
        read_repertoire(path)


def test_merge_leaves_dropped_duplicates_out(tmp_path):
    # the merge drops filtered rows in its own pass: a non-productive copy of a clonotype adds
    # nothing to it, and a clonotype with another V call stays apart
    path = write_airr(tmp_path / "m.tsv", [
        ["a", "CASSLF", "TRBV5-1*01", "TRBJ2-5*01", 2, "T", "TRB"],
        ["b", "CASSLF", "TRBV5-1*01", "TRBJ2-5*01", 7, "F", "TRB"],
        ["c", "CASSPF", "TRBV7-9*01", "TRBJ2-2*01", 1, "T", "TRB"],
        ["d", "CASSLF", "TRBV5-1*01", "TRBJ2-5*01", 3, "T", "TRB"],
        ["e", "CASSLF", "TRBV7-9*01", "TRBJ2-5*01", 1, "T", "TRB"],
    ])
    read = read_repertoire(path)
    assert read.table.select("junction_aa", "v_call", "duplicate_count", "sequence_id").rows() == [
        ("CASSLF", "TRBV5-1*01", 5, "a,d"), ("CASSPF", "TRBV7-9*01", 1, "c"), ("CASSLF", "TRBV7-9*01", 1, "e")]
    assert read.dropped["non_productive"] == 1
