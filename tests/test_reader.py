
import pytest

from conftest import PUBLIC_DATA, write_airr, write_table
from repclass.errors import InputFileError, UsageError
from repclass.reader import ReadOptions, read_repertoire


def test_merges_identical_rows_and_counts_drops(small_cohort):
    _, folder = small_cohort
    read = read_repertoire(folder / "s1.tsv")
    assert read.table.columns == ["junction_aa", "v_call", "j_call", "duplicate_count"]
    assert read.table.rows() == [("CASSLGQETQYF", "TRBV5-1*01", "TRBJ2-5*01", 5),
                                 ("CASSPGTGELFF", "TRBV7-9*01", "TRBJ2-2*01", 1)]
    assert read.rows_read == 4
    assert read.dropped["non_productive"] == 1
    assert read.n_templates == 6


def test_missing_count_is_one_and_partial_junctions_dropped(small_cohort):
    _, folder = small_cohort
    read = read_repertoire(folder / "s3.tsv")
    assert read.table.rows() == [("CAWSVGQGAYEQYF", "TRBV30*01", "TRBJ2-7*01", 1)]
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
    ("scirpy_10x_vdj_nextgem_hs_pbmc3_t_filtered_contig_annotations.csv.gz", 3109, 24604),
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
    assert set(read.table["v_call"].drop_nulls().str.slice(0, 3).to_list()) == {"TRB"}
