"""V/D/J/C gene calls to IMGT nomenclature, by tidytcells (a maintained IMGT reference).

Exports spell genes differently: Adaptive writes `TCRBV05-01*01` for IMGT `TRBV5-1*01` and
`TCRBV12-03/12-04*01` for a call that could be either gene, MiXCR appends alignment scores
(`IGHV3-23*00(887.9)`) and lists weaker hits after the best one, AIRR writes equally good calls
as a comma-separated list, older files use `TRBV6S5` or lower case. tidytcells
(https://tidytcells.readthedocs.io) knows the IMGT gene and allele names and their synonyms;
this module only splits and joins the calls around it:

- a valid name comes back in IMGT spelling (`trbv5-1` -> `TRBV5-1`, `TRBV6S5` -> `TRBV6-5`);
- an ambiguous call stays ambiguous, as an AIRR comma-separated list (`TCRBV12-03/12-04*01` ->
  `TRBV12-3*01,TRBV12-4*01`), and a family-level call stays at the family (`TCRBV05` -> `TRBV5`,
  never one of its genes); an allele IMGT does not know (MiXCR's `*00`) is dropped, the gene kept;
- a name that is not a human gene (`TRBV99-1`, `TRBVXX-XX`) is unresolved: None, never a guess.
  The reader counts such rows per sample and the ingest summary names examples.

Calls are normalised once per distinct value (the reader maps distinct values), and cached.
"""
from __future__ import annotations

import functools
import re

LOCI = ("TRA", "TRB", "TRG", "TRD", "IGH", "IGK", "IGL")

_ADAPTIVE_PREFIX = re.compile(r"^TCR([ABGD])([VDJC])")
_SCORE_SUFFIX = re.compile(r"\([^)]*\)$")
# A leading zero in a family or gene number (IMGT names never have one): TRBV05-01 -> TRBV5-1.
_LEADING_ZERO = re.compile(r"(?<=[VDJC-])0+(?=\d)")
# A family-level call (no gene number after the family): TRBV5, IGHV3.
_FAMILY = re.compile(r"^(?:TR[ABGD]|IG[HKL])[VDJ]\d+$")
# The prefix a '/'-joined alternative borrows from the first one: `TRBV` of TRBV12-3/12-4.
_SEGMENT_PREFIX = re.compile(r"^((?:TR[ABGD]|IG[HKL])[VDJC])")


def _tidytcells(symbol: str) -> str | None:
    """tidytcells' IMGT name for one human gene or allele symbol, or None."""
    import tidytcells

    standardize = tidytcells.ig.standardize if symbol.upper().startswith("IG") else tidytcells.tr.standardize
    # enforce_functional=False: pseudogenes and ORFs are real calls too; log_failures=False: the
    # reader reports unresolved names per sample instead of one log line per name.
    return standardize(symbol, species="homosapiens", enforce_functional=False, log_failures=False)


@functools.cache
def _family_has_genes(family: str) -> bool:
    """Whether an IMGT family (TRBV5) is split into genes (TRBV5-1, TRBV5-4, ...)."""
    import tidytcells

    query = tidytcells.ig.query if family.startswith("IG") else tidytcells.tr.query
    genes = query(species="homosapiens", precision="gene", functionality="any")
    return any(gene.startswith(family + "-") for gene in genes)


def _clean(symbol: str) -> str:
    """Upper case, Adaptive's TCR prefix to IMGT's TR, no leading zeros in numbers."""
    symbol = symbol.strip().upper()
    symbol = _ADAPTIVE_PREFIX.sub(r"TR\1\2", symbol)
    gene, star, allele = symbol.partition("*")
    return _LEADING_ZERO.sub("", gene) + star + allele


def _one(symbol: str) -> str | None:
    """One unambiguous call (gene or allele) in IMGT spelling, or None."""
    symbol = _clean(symbol)
    if not symbol:
        return None
    gene = symbol.partition("*")[0]
    if _FAMILY.match(gene) and _family_has_genes(gene):
        # tidytcells would pick the family's first gene; a family-level call stays one.
        return gene
    found = _tidytcells(symbol)
    if found is None and "*" in symbol:  # an allele IMGT does not list (MiXCR's *00): keep the gene
        found = _tidytcells(gene)
    return found


def _alternatives(symbol: str) -> list[str]:
    """A '/'-joined ambiguous call split into its alternatives: TRBV12-3/12-4*01 -> TRBV12-3*01,
    TRBV12-4*01 (the allele applies to each; later alternatives borrow the first one's prefix)."""
    cleaned = _clean(symbol)
    gene, star, allele = cleaned.partition("*")
    parts = gene.split("/")
    prefix = _SEGMENT_PREFIX.match(parts[0])
    if prefix is None or len(parts) < 2:
        return [symbol]
    named = [parts[0]] + [p if _SEGMENT_PREFIX.match(p) else prefix.group(1) + p for p in parts[1:]]
    return [name + star + allele for name in named]


@functools.lru_cache(maxsize=65_536)
def normalise_gene(name: str | None) -> str | None:
    """The IMGT spelling of an export's gene call; None for no call or an unresolved one.

    Equally good calls (AIRR commas, Adaptive's '/') come back as an AIRR comma-separated list
    in the order given; a call with any unresolved alternative is unresolved as a whole (dropping
    the alternative would make the call look more certain than it is). Of a MiXCR hit list
    (scores in parentheses), the best hit is kept: the others are weaker alignments.
    """
    if name is None:
        return None
    calls = [c.strip() for c in name.split(",") if c.strip()]
    if not calls:
        return None
    if _SCORE_SUFFIX.search(calls[0]):
        calls = [_SCORE_SUFFIX.sub("", calls[0]).strip()]
    resolved: list[str] = []
    for call in calls:
        found = _one(call)
        if found is None and "/" in call:
            found_parts = [_one(part) for part in _alternatives(call)]
            found = None if None in found_parts else ",".join(found_parts)
        if found is None:
            return None
        for part in found.split(","):
            if part not in resolved:
                resolved.append(part)
    return ",".join(resolved)
