"""Motifs and how they are written into sequences: wildcards, substitutions, gaps, broken copies.

A motif is a string of the 20 amino acids and `.`, a wildcard position filled with a random
residue at each implant. One implant of motif M into a sequence:

1. wildcards are filled with random residues;
2. substitution: each position that was not a wildcard is, with the substitution probability,
   replaced by one of the 19 other residues (so a substitution always changes the residue);
3. gap: with the gap probability, one interior position (not the first or last; motifs of at
   least 3 positions) is deleted, as in DeepRC's SF^dEN: SFEN becomes SEN or SFN;
4. the result (the implanted text) overwrites as many residues of the sequence, starting at a
   random position that leaves `FLANK` residues on each side (the conserved C and F/W anchors
   and their neighbours are never touched); the sequence keeps its length.

A noise implant (negatives only) writes a broken copy instead: the filled motif's residues
shuffled, then steps 2-4; a copy in which a motif (or, with gaps on, a gapped motif such as SEN)
can be found is redrawn, and so is an implant that spells one together with its neighbours
(when every shuffle matches, e.g. AAAA, residues are substituted until none does). So having an
implant of the right composition and length does not separate the classes; only the motif does.
Substituted copies of a motif (SFEA) are not excluded from noise: substitution is noise.
"""
from __future__ import annotations

import re

import numpy as np

from repclass.alphabet import AMINO_ACIDS
from repclass.errors import UsageError

#: Residues kept untouched at each end of a junction.
FLANK = 3
WILDCARD = "."
_SHUFFLE_TRIES = 20


def normalise_motif(motif: str) -> str:
    """Upper-cased motif, or UsageError naming what is wrong with it."""
    text = str(motif).strip().upper()
    if not text:
        raise UsageError("a motif is empty; give residues such as SFEN, with '.' for a wildcard position")
    bad = sorted({c for c in text if c not in AMINO_ACIDS and c != WILDCARD})
    if bad:
        raise UsageError(f"motif {motif!r} has {', '.join(repr(c) for c in bad)}, which is not one of the 20 amino "
                         f"acids {AMINO_ACIDS} or the wildcard '.'")
    if set(text) == {WILDCARD}:
        raise UsageError(f"motif {motif!r} is only wildcards; it needs at least one residue")
    return text


def motif_pattern(motifs: tuple[str, ...] | list[str]) -> str:
    """A regular expression matching any of the motifs exactly ('.' matches any residue)."""
    return "|".join(f"(?:{m})" for m in motifs)


def random_motifs(rng: np.random.Generator, n: int, length: tuple[int, int], avoid: tuple[str, ...]) -> tuple[str, ...]:
    """n distinct random motifs (residues uniform over the alphabet, lengths uniform in `length`)."""
    chosen: list[str] = []
    while len(chosen) < n:
        size = int(rng.integers(length[0], length[1] + 1))
        motif = "".join(AMINO_ACIDS[i] for i in rng.integers(0, len(AMINO_ACIDS), size))
        if motif not in chosen and motif not in avoid:
            chosen.append(motif)
    return tuple(chosen)


def _random_residue(rng: np.random.Generator, other_than: str | None = None) -> str:
    if other_than is None:
        return AMINO_ACIDS[int(rng.integers(len(AMINO_ACIDS)))]
    choices = AMINO_ACIDS.replace(other_than, "")
    return choices[int(rng.integers(len(choices)))]


def _fill(rng: np.random.Generator, motif: str) -> list[str]:
    return [_random_residue(rng) if c == WILDCARD else c for c in motif]


def _substitute_and_gap(rng: np.random.Generator, residues: list[str], fixed: list[bool], substitution: float,
                        gap: float) -> str:
    for i, residue in enumerate(residues):
        if fixed[i] and substitution > 0 and rng.random() < substitution:
            residues[i] = _random_residue(rng, other_than=residue)
    if gap > 0 and len(residues) >= 3 and rng.random() < gap:
        del residues[int(rng.integers(1, len(residues) - 1))]
    return "".join(residues)


def witness_text(rng: np.random.Generator, motif: str, substitution: float, gap: float) -> str:
    """What one witness implant of `motif` writes (steps 1-3 above)."""
    return _substitute_and_gap(rng, _fill(rng, motif), [c != WILDCARD for c in motif], substitution, gap)


def gapped_variants(motifs: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The motifs and every copy with one interior position deleted (what a gap can make of them)."""
    variants = list(motifs)
    for motif in motifs:
        for i in range(1, len(motif) - 1):
            variant = motif[:i] + motif[i + 1:]
            if variant not in variants:
                variants.append(variant)
    return tuple(variants)


def noise_text(rng: np.random.Generator, motif: str, matcher: re.Pattern[str], substitution: float,
               gap: float) -> str:
    """A broken copy of `motif`: its residues shuffled, then steps 2-3, such that `matcher` (the
    motifs, and their gapped variants when gaps are on) finds nothing in it."""
    filled = _fill(rng, motif)
    for _ in range(_SHUFFLE_TRIES):
        shuffled = [filled[i] for i in rng.permutation(len(filled))]
        text = _substitute_and_gap(rng, shuffled, [True] * len(shuffled), substitution, gap)
        if not matcher.search(text):
            return text
    # e.g. AAAA: no shuffle breaks it; change residues until nothing matches
    broken = list(filled)
    while matcher.search("".join(broken)):
        i = int(rng.integers(len(broken)))
        broken[i] = _random_residue(rng, other_than=broken[i])
    return "".join(broken)


def implant_position(rng: np.random.Generator, length: int, text_length: int) -> int | None:
    """A random start leaving FLANK residues on each side, or None when the sequence is too short."""
    last = length - FLANK - text_length
    if last < FLANK:
        return None
    return int(rng.integers(FLANK, last + 1))
