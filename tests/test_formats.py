import gzip

import pytest
import zstandard

from support.files import PUBLIC_DATA, write_table
from repclass.errors import InputFileError
from repclass.io.formats import ColumnOverrides, sniff


@pytest.mark.parametrize("name, fmt, junction, count, convention", [
    ("airr_standards_good_rearrangement.tsv", "airr", "junction_aa", "duplicate_count", "junction"),
    ("airr_standards_good_rearrangement.tsv.gz", "airr", "junction_aa", "duplicate_count", "junction"),
    ("airr_standards_R_rearrangement-example_quoted.tsv.gz", "airr", "junction_aa", "duplicate_count", "junction"),
    ("scirpy_10x_filtered_contig_annotations.csv", "10x_contigs", "cdr3", None, "junction"),  # cells are counted
    ("ireceptor_10x_HC1-IGH_airr_rearrangement_first80.tsv", "airr", "junction_aa", "duplicate_count", "junction"),
    ("lymphoseq_adaptive_v1_TRB_CD8_CMV_369.tsv", "adaptive_v1", "aminoAcid", "count (templates/reads)",
     "junction"),
    ("lymphoseq_adaptive_v1_IGH_MVQ92552A_BL.tsv", "adaptive_v1", "aminoAcid", "count (reads)", "junction"),
    ("tcrdist3_adaptive_v2_Adaptive2020_first300.tsv", "adaptive_v2", "amino_acid", "templates", "junction"),
    ("ireceptor_mixcr_TRB-Pt-1-8_S150.clones_first500.txt", "mixcr", "aaSeqCDR3", "cloneCount", "junction"),
    ("tcrdist3_vdjtools_M_15_CD8_beta.clonotypes.TRB_first500.txt", "vdjtools", "cdr3aa", "count", "junction"),
])
def test_sniff_recognises_public_exports(name, fmt, junction, count, convention):
    layout = sniff(PUBLIC_DATA / name)
    assert layout.format_name == fmt
    assert layout.columns["junction_aa"] == junction
    assert layout.columns.get("count") == count
    assert layout.convention == convention


def test_sniff_separator_and_compression(tmp_path):
    rows = [["CASSLGQETQYF", 2]]
    plain = write_table(tmp_path / "a.csv", ["junction_aa", "duplicate_count"], rows, separator=",")
    gz = write_table(tmp_path / "b.tsv.gz", ["junction_aa", "duplicate_count"], rows, compress=True)
    zst = tmp_path / "c.tsv.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(b"junction_aa\tduplicate_count\nCASSF\t1\n"))
    assert (sniff(plain).separator, sniff(plain).compression) == (",", "none")
    assert (sniff(gz).separator, sniff(gz).compression) == ("\t", "gzip")
    assert (sniff(zst).separator, sniff(zst).compression) == ("\t", "zstd")


def test_cdr3_aa_column_is_the_cdr3_convention(tmp_path):
    path = write_table(tmp_path / "a.tsv", ["cdr3", "cdr3_aa", "v_call"], [["GCC", "ASSLGQETQY", "TRBV5-1"]])
    layout = sniff(path)
    assert layout.columns["junction_aa"] == "cdr3_aa"  # AIRR's nucleotide `cdr3` is never taken for amino acids
    assert layout.convention == "cdr3"


def test_frequency_column_is_never_a_count(tmp_path):
    path = write_table(tmp_path / "a.tsv", ["cdr3aa", "freq"], [["CASSF", 0.5]])
    assert "count" not in sniff(path).columns


def test_vdjtools_hash_header(tmp_path):
    path = write_table(tmp_path / "a.txt", ["#count", "freq", "cdr3nt", "cdr3aa", "v", "d", "j"],
                       [[3, 0.1, "TGT", "CASSF", "TRBV5-1", ".", "TRBJ2-1"]])
    layout = sniff(path)
    assert layout.format_name == "vdjtools"
    assert layout.columns["count"] == "#count"


def test_missing_junction_column_lists_columns_and_accepted_names(tmp_path):
    path = write_table(tmp_path / "a.tsv", ["sequence_id", "v_call", "duplicate_count"], [["x", "TRBV5-1", 1]])
    with pytest.raises(InputFileError) as info:
        sniff(path)
    message = str(info.value)
    assert str(path) in message and "line 1" in message
    assert "columns seen: sequence_id, v_call, duplicate_count" in message
    assert "junction_aa" in message and "--junction-column" in message


def test_column_override(tmp_path):
    path = write_table(tmp_path / "a.tsv", ["my_cdr3", "n"], [["CASSF", 1]])
    layout = sniff(path, ColumnOverrides(junction_aa="my_cdr3", count="n"))
    assert layout.columns == {"junction_aa": "my_cdr3", "count": "n"}
    with pytest.raises(InputFileError, match="'nope'.*not in the header"):
        sniff(path, ColumnOverrides(junction_aa="nope"))


def test_missing_file_and_truncated_gzip(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        sniff(tmp_path / "absent.tsv")
    data = gzip.compress(b"junction_aa\n" + b"CASSLGQETQYF\n" * 10000)
    truncated = tmp_path / "t.tsv.gz"
    truncated.write_bytes(data[:40])
    with pytest.raises(InputFileError, match="corrupt or truncated"):
        sniff(truncated)
