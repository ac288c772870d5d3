import pytest

from repclass.genes import normalise_gene


@pytest.mark.parametrize("raw, imgt", [
    ("TCRBV05-01*01", "TRBV5-1*01"),
    ("TCRBV05-01", "TRBV5-1"),
    ("TCRBV05", "TRBV5"),
    ("TCRBJ01-02*01", "TRBJ1-2*01"),
    ("TCRBV12-03/12-04*01", "TRBV12-3"),
    ("TCRBV10-01", "TRBV10-1"),
    ("IGHV3-8*00(887.9)", "IGHV3-8*00"),
    ("IGHV3-8*00(887.9),IGHV3-9*00(100)", "IGHV3-8*00"),
    ("TRBV5-1*01,TRBV5-1*02", "TRBV5-1*01"),
    ("TRAV14/DV4*01", "TRAV14/DV4*01"),
    ("TRBV7-9", "TRBV7-9"),
    ("  TRBV30*01 ", "TRBV30*01"),
    ("", None),
    (None, None),
])
def test_normalise_gene_maps_exports_to_imgt(raw, imgt):
    assert normalise_gene(raw) == imgt
