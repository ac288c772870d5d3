import gzip

import pytest

from repclass.io.genes import normalise_gene


@pytest.mark.parametrize("raw, imgt", [
    # Adaptive spellings
    ("TCRBV05-01*01", "TRBV5-1*01"),
    ("TCRBV05-01", "TRBV5-1"),
    ("TCRBJ01-02*01", "TRBJ1-2*01"),
    ("TCRBV10-01", "TRBV10-1"),
    ("TCRBV01-01*01", "TRBV1*01"),           # IMGT's TRBV1 has no gene number
    # ambiguous calls stay ambiguous (AIRR: comma-separated), in the order given
    ("TCRBV12-03/12-04*01", "TRBV12-3*01,TRBV12-4*01"),  # issue 13: was TRBV12-3
    ("TRBV6-2/6-3", "TRBV6-2,TRBV6-3"),
    ("TRBV5-1*01,TRBV5-1*02", "TRBV5-1*01,TRBV5-1*02"),
    ("TRBV5-1*01, TRBV5-1*01", "TRBV5-1*01"),  # duplicates once
    # a family-level call stays at the family, never one of its genes
    ("TCRBV05", "TRBV5"),
    ("TRBV12", "TRBV12"),
    ("TRBV2", "TRBV2"),                      # a family of one gene is that gene
    # issue 13's examples: case, old nomenclature, IMGT's own '/'
    ("trbv5-1", "TRBV5-1"),
    ("TRBV6S5", "TRBV6-5"),
    ("TRAV14DV4", "TRAV14/DV4"),
    ("TRAV14/DV4*01", "TRAV14/DV4*01"),
    ("TRBV7-9", "TRBV7-9"),
    ("  TRBV30*01 ", "TRBV30*01"),
    # MiXCR: the best hit, score removed; an allele IMGT does not list (*00) leaves the gene
    ("IGHV3-23*00(887.9)", "IGHV3-23"),
    ("IGHV3-23*01(887.9),IGHV3-9*01(100)", "IGHV3-23*01"),
    ("TRBV5-1*00", "TRBV5-1"),
    # constant genes (c_call)
    ("TRBC1", "TRBC1"),
    ("IGHG1", "IGHG1"),
    # unresolved: never invented
    ("TRBV99-1", None),
    ("TRBVXX-XX", None),
    ("IGHV3-8*00(887.9)", None),             # not a human gene
    ("TRBV5-1*01,TRBV99-1", None),           # one unresolved alternative: the call is unresolved
    ("", None),
    (None, None),
])
def test_normalise_gene_maps_exports_to_imgt(raw, imgt):
    assert normalise_gene(raw) == imgt


def test_unresolved_gene_names_are_counted_per_sample_and_kept_without_the_call(tmp_path):
    from repclass.io.ingestion import ingest
    from repclass.io.reader import read_repertoire

    rows = [("CASSLGQETQYF", "TRBV99-1", "TRBJ2-5*01", 3), ("CASSPGTGELFF", "TRBVXX-XX", "TRBJ2-2*01", 1),
            ("CASSPGTGELFW", "TRBV99-1", "TRBJ2-2*01", 1), ("CASSLGGETQYF", "unresolved", "TRBJ2-2*01", 1),
            ("CASSLGAETQYF", "trbv5-1", "TRBJ9-9", 1), ("CASSQGAETQYF", "TRBV5-1*01", "TRBJ2-2*01", 1)]
    path = tmp_path / "s1.tsv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("junction_aa\tv_call\tj_call\tduplicate_count\n")
        handle.writelines("\t".join(map(str, row)) + "\n" for row in rows)
    read = read_repertoire(path)
    # four rows with an unresolved call (the 'unresolved' spelling is Adaptive's null, not a name)
    assert read.unresolved_genes == {"": 4, "TRBV99-1": 2, "TRBJ9-9": 1, "TRBVXX-XX": 1}
    calls = {j: (v, jc) for j, v, jc in read.table.select("junction_aa", "v_call", "j_call").iter_rows()}
    assert calls["CASSLGQETQYF"] == (None, "TRBJ2-5*01") and calls["CASSLGAETQYF"] == ("TRBV5-1", None)
    assert read.n_sequences == len(rows)

    (tmp_path / "samples.tsv").write_text("sample_id\tstatus\ns1\t+\n")
    store = ingest(tmp_path / "samples.tsv", tmp_path / "out.store", [path])
    row = store.samples.row(0, named=True)
    assert row["unresolved_genes"] == 4
    assert row["unresolved_gene_examples"] == "TRBV99-1 x2; TRBJ9-9 x1; TRBVXX-XX x1"
    assert store.records()[0].unresolved_genes == 4
