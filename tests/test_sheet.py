import pytest

from support.files import write_table
from repclass.errors import SheetError
from repclass.io.sheet import file_stem, match_files, read_sheet


def test_read_sheet_detects_id_and_labels(small_cohort):
    sheet_path, _ = small_cohort
    sheet = read_sheet(sheet_path)
    assert sheet.id_column == "sample_id"
    assert sheet.label_columns == ["status", "age"]
    assert sheet.row("s2").labels == {"status": "-", "age": "51"}


def test_csv_sheet_with_filename_column(tmp_path):
    path = write_table(tmp_path / "meta.csv", ["filename", "subject_id", "CMV"],
                       [["rep1.tsv.gz", "p1", "True"], ["rep2.tsv.gz", "p2", "False"]], separator=",")
    sheet = read_sheet(path)
    assert sheet.ids == ["p1", "p2"]  # subject_id beats filename as the id
    assert sheet.file_column == "filename"
    assert sheet.label_columns == ["CMV"]


@pytest.mark.parametrize("name, stem", [("s1.tsv.gz", "s1"), ("a.b.csv", "a.b"), ("x.zst", "x"), ("r.txt", "r")])
def test_file_stem(name, stem):
    assert file_stem(name) == stem


def test_duplicate_ids_name_both_lines(tmp_path):
    path = write_table(tmp_path / "s.tsv", ["sample_id", "y"], [["a", 1], ["b", 0], ["a", 1]])
    with pytest.raises(SheetError, match=r"line 4: duplicate sample id 'a' \(first on line 2\)"):
        read_sheet(path)


def test_no_id_column(tmp_path):
    path = write_table(tmp_path / "s.tsv", ["who", "y"], [["a", 1]])
    with pytest.raises(SheetError, match="no sample id column.*--id-column"):
        read_sheet(path)
    assert read_sheet(path, id_column="who").ids == ["a"]


def test_sheet_file_mismatch_lists_ids(small_cohort, tmp_path):
    sheet_path, folder = small_cohort
    (folder / "s9.tsv").write_text("junction_aa\nCASSF\n")
    (folder / "s2.tsv.gz").unlink()
    with pytest.raises(SheetError) as info:
        match_files(read_sheet(sheet_path), [folder])
    message = str(info.value)
    assert "file(s) with no row in the sheet:" in message and "s9.tsv" in message
    assert "sheet row(s) with no file: s2" in message


def test_match_by_stem_and_only(small_cohort):
    sheet_path, folder = small_cohort
    sheet = read_sheet(sheet_path)
    pairs = match_files(sheet, [folder])
    assert {k: v.name for k, v in pairs.items()} == {"s1": "s1.tsv", "s2": "s2.tsv.gz", "s3": "s3.tsv"}
    assert list(match_files(sheet, [folder], only=["s3"])) == ["s3"]
    with pytest.raises(SheetError, match="no row for sample"):
        match_files(sheet, [folder], only=["nope"])


def test_file_column_relative_to_sheet(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.tsv").write_text("junction_aa\nCASSF\n")
    path = write_table(tmp_path / "s.tsv", ["sample_id", "file"], [["p1", "data/x.tsv"]])
    assert match_files(read_sheet(path), []) == {"p1": tmp_path / "data" / "x.tsv"}
