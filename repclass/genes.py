"""V/J gene names to IMGT nomenclature.

Exports spell genes differently: Adaptive writes `TCRBV05-01*01` for IMGT `TRBV5-1*01`, MiXCR
appends alignment scores (`IGHV3-8*00(887.9)`) and lists several hits, AIRR allows a
comma-separated list of equally good calls. The store keeps one IMGT name per call (the first
hit). Names are normalised once per distinct value, never per row.
"""
from __future__ import annotations

import re

LOCI = ("TRA", "TRB", "TRG", "TRD", "IGH", "IGK", "IGL")

_ADAPTIVE_PREFIX = re.compile(r"^TCR([ABGD])([VDJ])(.*)$")
_SCORE_SUFFIX = re.compile(r"\([^)]*\)$")
# A leading zero in a family or gene number (IMGT names never have one).
_LEADING_ZERO = re.compile(r"(?<=[VDJ-])0+(?=\d)")


def normalise_gene(name: str | None) -> str | None:
    """One IMGT-style gene name from an export's call; None for no call."""
    if name is None:
        return None
    name = name.strip().split(",")[0].strip()
    name = _SCORE_SUFFIX.sub("", name).strip()
    if not name:
        return None
    adaptive = _ADAPTIVE_PREFIX.match(name)
    if adaptive:
        chain, segment, rest = adaptive.groups()
        # Adaptive joins ambiguous genes with '/': keep the first (IMGT's own '/' as in
        # TRAV14/DV4 never follows a TCR-prefixed name).
        name = f"TR{chain}{segment}{rest.split('/')[0]}"
    gene, star, allele = name.partition("*")
    if gene[:2] in ("TR", "IG"):
        gene = _LEADING_ZERO.sub("", gene)
    return gene + star + allele

