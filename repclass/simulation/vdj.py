"""A vectorised sampler of productive junctions from OLGA's V(D)J generative models.

OLGA (Sethna et al. 2019, GPL-3.0) ships IGoR-style recombination models and a generator,
`SequenceGenerationVDJ.gen_rnd_prod_CDR3`, that draws one recombination scenario at a time in
pure Python (~8k sequences/s): too slow for cohorts of millions of sequences. This module reads
the same model (through OLGA's own model loader, so the files are parsed exactly as OLGA parses
them) and draws whole batches of scenarios with numpy. The model, as OLGA samples it:

  V ~ P(V);  (D, J) ~ P(D, J);  delV ~ P(delV | V);  delJ ~ P(delJ | J);
  (delDl, delDr) ~ P(delDl, delDr | D);  insVD ~ P(insVD);  insDJ ~ P(insDJ);
  N1 and N2 nucleotides from a first-nucleotide distribution (the stationary distribution of the
  dinucleotide Markov chain when the model gives none) and then the chain; N2 is generated from
  its J side and reversed.

Each V/D/J germline segment is stored cut to the CDR3 with the longest palindromic (P) addition
appended, so a deletion index d removes d nucleotides from that end (small d adds P nucleotides).
A scenario is kept when the segments are long enough for their deletions, the junction length is
a multiple of 3, the translation has no stop codon, starts with C and ends with one of the
conserved J residues. Rejection sampling over independent draws gives the same distribution as
OLGA's loop, which redraws a full scenario after every rejection. Two things make it fast:
Walker alias tables (one uniform and two lookups per draw, also for the distributions
conditioned on a gene), and drawing insDJ within the residue class mod 3 that puts the junction
in frame after admitting the rest of the scenario with the matching probability (exact, and it
avoids discarding two scenarios in three). Junctions are assembled and translated in one flat
array. About 350,000 human TRB junctions per CPU-second (OLGA's generator: ~7,000) on the
2-core VM of docs/performance.md; tests/test_simulate.py compares length, V, J and residue
distributions with OLGA's own generator.
"""
from __future__ import annotations

import functools
import gc
import os
import warnings
from dataclasses import dataclass

import numpy as np

from repclass.errors import UsageError

#: --background-model name -> (OLGA's model folder, locus written to the AIRR `locus` column).
MODELS = {
    "human_TRB": ("human_T_beta", "TRB"),
    "human_IGH": ("human_B_heavy", "IGH"),
    "mouse_TRB": ("mouse_T_beta", "TRB"),
}

_NT_CODE = np.full(256, 255, dtype=np.uint8)
for _code, _letter in enumerate("ACGT"):
    _NT_CODE[ord(_letter)] = _code
    _NT_CODE[ord(_letter.lower())] = _code
# The standard genetic code with bases in TCAG order (NCBI table 1); _TCAG_CODE maps our ACGT codes to it.
_CODON_TABLE = np.frombuffer(b"FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG", dtype=np.uint8)
_TCAG_CODE = np.array([2, 1, 3, 0], dtype=np.uint8)
_STOP = ord("*")
_STOP_CODONS = ("TAA", "TAG", "TGA")
_ACGT = np.frombuffer(b"ACGT", dtype=np.uint8)
# Scenarios drawn per batch: large enough to amortise numpy calls, small enough for the cache.
_MAX_DRAWS = 100_000


def _require_olga():
    try:
        import olga  # noqa: F401
        import olga.load_model  # noqa: F401
    except ImportError as exc:
        raise UsageError("the OLGA background model needs the olga package: pip install olga "
                         "(or pass --background STORE to implant into your own repertoires)") from exc
    return olga


def _segments(seqs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Germline segments as a padded (n, max_len) uint8 matrix of ACGT codes and their lengths."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    matrix = np.zeros((len(seqs), max(1, int(lengths.max(initial=0)))), dtype=np.uint8)
    for i, s in enumerate(seqs):
        if s:
            codes = _NT_CODE[np.frombuffer(s.encode("ascii"), dtype=np.uint8)]
            if (codes == 255).any():
                raise ValueError(f"germline segment {i} has a letter other than ACGT")
            matrix[i, : len(s)] = codes
    return matrix, lengths


def _normalised_cumulative(p: np.ndarray) -> np.ndarray:
    """Row-wise cumulative distributions of the rows of `p` (rows summing to 0 stay 0)."""
    p = np.asarray(p, dtype=np.float64)
    total = p.sum(axis=-1, keepdims=True)
    return np.cumsum(np.divide(p, total, out=np.zeros_like(p), where=total > 0), axis=-1)


def _stationary(transition: np.ndarray) -> np.ndarray:
    """Stationary distribution of a Markov chain whose column j is P(next | previous = j)."""
    values, vectors = np.linalg.eig(transition)
    vector = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    return vector / vector.sum()


@dataclass(frozen=True, eq=False)
class VDJModel:
    """The arrays a batch sampler needs, derived from one OLGA VDJ model."""

    name: str
    locus: str
    v_names: tuple[str, ...]
    j_names: tuple[str, ...]
    v: "Alias"                   # P(V)
    dj: "Alias"                  # P(D, J) flattened, J fastest
    n_j: int
    del_v: "Alias"               # P(delV | V): one row per V
    del_j: "Alias"               # P(delJ | J)
    del_d: "Alias"               # P(delDl, delDr | D), delDr fastest
    n_del_dr: int
    ins_vd: "Alias"              # P(insVD)
    ins_dj_mod3: np.ndarray      # (3,) P(insDJ = k mod 3)
    ins_dj_given_mod3: "Alias"   # P(insDJ | insDJ mod 3): one row per residue class
    cum_first_vd: np.ndarray     # (4,)
    cum_first_dj: np.ndarray
    cum_next_vd: np.ndarray      # (4, 4): row = previous nucleotide, cumulative over the next
    cum_next_dj: np.ndarray
    v_seq: np.ndarray            # (nV, max_len) nucleotide codes
    v_len: np.ndarray
    d_seq: np.ndarray
    d_len: np.ndarray
    j_seq: np.ndarray
    j_len: np.ndarray


@functools.lru_cache(maxsize=None)
def load_model(name: str) -> VDJModel:
    """Load one of OLGA's shipped models (`MODELS`) into sampler arrays."""
    if name not in MODELS:
        raise UsageError(f"unknown background model {name!r}; choose one of {', '.join(MODELS)}")
    olga = _require_olga()
    from olga import load_model as olga_load

    folder, locus = MODELS[name]
    path = os.path.join(os.path.dirname(olga.__file__), "default_models", folder)
    with warnings.catch_warnings():
        # OLGA's loader leaves its files for the garbage collector to close.
        warnings.simplefilter("ignore", ResourceWarning)
        genomic = olga_load.GenomicDataVDJ()
        genomic.load_igor_genomic_data(os.path.join(path, "model_params.txt"),
                                       os.path.join(path, "V_gene_CDR3_anchors.csv"),
                                       os.path.join(path, "J_gene_CDR3_anchors.csv"))
        generative = olga_load.GenerativeModelVDJ()
        generative.load_and_process_igor_model(os.path.join(path, "model_marginals.txt"))
        gc.collect()

    # OLGA's arrays index (deletion, gene); we sample rows by gene, so transpose.
    r_vd = np.asarray(generative.Rvd, dtype=np.float64)   # (next, previous)
    r_dj = np.asarray(generative.Rdj, dtype=np.float64)
    first_vd = generative.first_nt_bias_insVD
    first_dj = generative.first_nt_bias_insDJ
    first_vd = _stationary(r_vd) if first_vd is None else np.asarray(first_vd, dtype=np.float64)
    first_dj = _stationary(r_dj) if first_dj is None else np.asarray(first_dj, dtype=np.float64)
    p_del_d = np.asarray(generative.PdelDldelDr_given_D, dtype=np.float64)  # (delDl, delDr, D)
    p_ins_dj = np.asarray(generative.PinsDJ, dtype=np.float64)
    by_class = np.stack([np.where(np.arange(p_ins_dj.size) % 3 == k, p_ins_dj, 0.0) for k in range(3)])
    ins_dj_mod3 = by_class.sum(axis=1)
    v_seq, v_len = _segments(list(genomic.cutV_genomic_CDR3_segs))
    d_seq, d_len = _segments(list(genomic.cutD_genomic_CDR3_segs))
    j_seq, j_len = _segments(list(genomic.cutJ_genomic_CDR3_segs))
    return VDJModel(
        name=name, locus=locus,
        v_names=tuple(v[0] for v in genomic.genV), j_names=tuple(j[0] for j in genomic.genJ),
        v=Alias.of(generative.PV), dj=Alias.of(np.asarray(generative.PDJ).ravel()),
        n_j=int(generative.PDJ.shape[1]),
        del_v=Alias.of(np.asarray(generative.PdelV_given_V).T),
        del_j=Alias.of(np.asarray(generative.PdelJ_given_J).T),
        del_d=Alias.of(np.transpose(p_del_d, (2, 0, 1)).reshape(p_del_d.shape[2], -1)),
        n_del_dr=int(p_del_d.shape[1]),
        ins_vd=Alias.of(generative.PinsVD),
        ins_dj_mod3=ins_dj_mod3 / ins_dj_mod3.sum(), ins_dj_given_mod3=Alias.of(by_class),
        cum_first_vd=_normalised_cumulative(first_vd), cum_first_dj=_normalised_cumulative(first_dj),
        cum_next_vd=_normalised_cumulative(r_vd.T), cum_next_dj=_normalised_cumulative(r_dj.T),
        v_seq=v_seq, v_len=v_len, d_seq=d_seq, d_len=d_len, j_seq=j_seq, j_len=j_len,
    )


def _draw(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws from one distribution (first index whose cumulative reaches u)."""
    return np.minimum(np.searchsorted(cumulative, u), cumulative.shape[-1] - 1)


@dataclass(frozen=True, eq=False)
class Alias:
    """Walker's alias tables of one or several discrete distributions: O(1) draws in numpy.

    Draw from row r with one uniform u: column c = floor(u * n); keep c when the fractional part
    of u * n is below keep[r, c], else take alias[r, c].
    """

    keep: np.ndarray   # (rows, n) float64
    alias: np.ndarray  # (rows, n) int64

    @classmethod
    def of(cls, p: np.ndarray) -> "Alias":
        p = np.atleast_2d(np.asarray(p, dtype=np.float64))
        rows, n = p.shape
        keep = np.ones((rows, n))
        alias = np.tile(np.arange(n, dtype=np.int64), (rows, 1))
        for r in range(rows):
            total = p[r].sum()
            if total <= 0:
                continue  # a distribution no draw ever uses (e.g. a V allele of probability 0)
            scaled = p[r] * n / total
            small = [i for i in range(n) if scaled[i] < 1.0]
            large = [i for i in range(n) if scaled[i] >= 1.0]
            while small and large:
                s_i, l_i = small.pop(), large.pop()
                keep[r, s_i], alias[r, s_i] = scaled[s_i], l_i
                scaled[l_i] -= 1.0 - scaled[s_i]
                (small if scaled[l_i] < 1.0 else large).append(l_i)
            # what is left is 1 up to rounding: kept
        return cls(keep=keep, alias=alias)

    def draw(self, u: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        n = self.keep.shape[1]
        scaled = u * n
        column = np.minimum(scaled.astype(np.int64), n - 1)
        flat = column if rows is None else rows * n + column
        keep = self.keep.ravel()[flat]
        return np.where(scaled - column < keep, column, self.alias.ravel()[flat])


def _insertions(rng: np.random.Generator, lengths: np.ndarray, cum_first: np.ndarray, cum_next: np.ndarray,
                *, reverse: bool = False) -> np.ndarray:
    """(n, max(lengths)) nucleotide codes of Markov-chain insertions, entries past a row's length 0.

    With `reverse`, row i holds its chain backwards (the chain starts at position lengths[i] - 1),
    as N2 is generated from the J side but read from the D side.
    """
    n = lengths.size
    width = int(lengths.max(initial=0))
    out = np.zeros((n, max(width, 1)), dtype=np.uint8)
    if width == 0:
        return out
    # Longest insertions first: step c of the chain concerns only a prefix of them.
    order = np.argsort(-lengths, kind="stable")
    active = np.searchsorted(-lengths[order], -np.arange(width), side="left")  # rows with length > c
    rows, row_length = order, lengths[order]
    # The chain has 4 states: the next state is how many of the previous state's first three
    # cumulative thresholds u exceeds (searchsorted's "first index reaching u").
    thresholds = [np.ascontiguousarray(cum_next[:, k]) for k in range(3)]
    state = np.zeros(n, dtype=np.intp)
    for column in range(width):
        k = int(active[column])
        u = rng.random(k)
        if column == 0:
            state[:k] = _draw(cum_first, u)
        else:
            previous = state[:k]
            state[:k] = ((u > thresholds[0][previous]).view(np.uint8) + (u > thresholds[1][previous]).view(np.uint8)
                         + (u > thresholds[2][previous]).view(np.uint8))
        at = row_length[:k] - 1 - column if reverse else column
        out[rows[:k], at] = state[:k]
    return out


def _batch(model: VDJModel, rng: np.random.Generator, n: int, anchors: np.ndarray, nucleotides: bool = False
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Draw n scenarios; return the productive ones as (aa bytes (m, w) zero-padded, aa lengths, V, J,
    and with `nucleotides` their ACGT bytes (m, 3w) zero-padded, else None)."""
    u = rng.random((n, 8))
    v = model.v.draw(u[:, 0])
    dj = model.dj.draw(u[:, 1])
    d, j = dj // model.n_j, dj % model.n_j
    del_v = model.del_v.draw(u[:, 2], v)
    del_j = model.del_j.draw(u[:, 3], j)
    del_d = model.del_d.draw(u[:, 4], d)
    del_dl, del_dr = del_d // model.n_del_dr, del_d % model.n_del_dr
    ins_vd = model.ins_vd.draw(u[:, 5])
    # Only in-frame junctions are kept, and insDJ is drawn last: rather than draw it freely and
    # reject 2 in 3 scenarios, keep the rest of a scenario with probability P(insDJ = the residue
    # mod 3 that puts it in frame) / max_k P(insDJ = k mod 3), then draw insDJ within that residue
    # class. The kept scenarios have exactly the distribution that rejection gives.
    partial = model.v_len[v] - del_v + ins_vd + model.d_len[d] - del_dl - del_dr + model.j_len[j] - del_j
    needed = (-partial) % 3                                                   # insDJ mod 3 for frame
    admit = u[:, 6] * model.ins_dj_mod3.max() < model.ins_dj_mod3[needed]
    ins_dj = model.ins_dj_given_mod3.draw(u[:, 7], needed)
    len_v = model.v_len[v] - del_v
    len_d = model.d_len[d] - del_dl - del_dr
    len_j = model.j_len[j] - del_j
    total = len_v + ins_vd + len_d + ins_dj + len_j
    # Segments long enough for their deletions, and at least two codons (C...F).
    keep = admit & (len_v > 0) & (len_d >= 0) & (len_j >= 0) & (total >= 6)
    v, d, j, del_dl, del_j = v[keep], d[keep], j[keep], del_dl[keep], del_j[keep]
    len_v, ins_vd, len_d, ins_dj, len_j = len_v[keep], ins_vd[keep], len_d[keep], ins_dj[keep], len_j[keep]
    total = total[keep]
    m = v.size
    if m == 0:
        return np.zeros((0, 1), np.uint8), np.zeros(0, np.int64), v, j, np.zeros((0, 3), np.uint8)

    n1 = _insertions(rng, ins_vd, model.cum_first_vd, model.cum_next_vd)                # (m, max N1)
    n2 = _insertions(rng, ins_dj, model.cum_first_dj, model.cum_next_dj, reverse=True)  # (m, max N2)
    # The junctions are assembled end to end in one flat array (no padding). Each junction is five
    # segments (V, N1, D, N2, J), each a run of consecutive entries of `source`: flat position t
    # in segment s of junction i reads source[a[i, s] + t].
    source = np.concatenate([model.v_seq.ravel(), model.d_seq.ravel(), model.j_seq.ravel(), n1.ravel(),
                             n2.ravel()])
    at_d = model.v_seq.size
    at_j = at_d + model.d_seq.size
    at_n1 = at_j + model.j_seq.size
    at_n2 = at_n1 + n1.size
    rows = np.arange(m, dtype=np.int64)
    start = np.cumsum(total) - total                                          # (m,) junction offsets
    b1 = start + len_v                                                        # flat segment starts
    b2 = b1 + ins_vd
    b3 = b2 + len_d
    b4 = b3 + ins_dj
    a = np.stack([v * model.v_seq.shape[1] - start,                           # V from its start
                  at_n1 + rows * n1.shape[1] - b1,                            # N1
                  at_d + d * model.d_seq.shape[1] + del_dl - b2,              # D after its 5' deletion
                  at_n2 + rows * n2.shape[1] - b3,                            # N2
                  at_j + j * model.j_seq.shape[1] + del_j - b4], axis=1)      # (m, 5)
    segment_length = np.stack([len_v, ins_vd, len_d, ins_dj, len_j], axis=1).ravel()  # (5m,)
    index = np.repeat(a.ravel(), segment_length) + np.arange(int(total.sum()), dtype=np.int64)  # (T,)
    flat = source[index]                                                      # (T,) ACGT codes
    codons = _TCAG_CODE[flat].reshape(-1, 3)                                  # (T/3, 3) TCAG codes
    aa = _CODON_TABLE[16 * codons[:, 0] + 4 * codons[:, 1] + codons[:, 2]]    # (T/3,) flat amino acids

    aa_len = total // 3
    aa_start = start // 3
    ok = (~np.logical_or.reduceat(aa == _STOP, aa_start) & (aa[aa_start] == ord("C"))
          & np.isin(aa[aa_start + aa_len - 1], anchors))
    # Kept junctions into a zero-padded (k, longest) matrix.
    lengths = aa_len[ok]
    width = max(1, int(lengths.max(initial=1)))
    column = np.arange(width)[None, :]
    padded = np.concatenate([aa, np.zeros(width, np.uint8)])
    out = np.where(column < lengths[:, None], padded[aa_start[ok][:, None] + column], 0).astype(np.uint8)
    nt = None
    if nucleotides:
        column = np.arange(3 * width)[None, :]
        padded = np.concatenate([_ACGT[flat], np.zeros(3 * width, np.uint8)])
        nt = np.where(column < 3 * lengths[:, None], padded[start[ok][:, None] + column], 0).astype(np.uint8)
    return out, lengths, v[ok], j[ok], nt


def sample_junctions(model: VDJModel, rng: np.random.Generator, n: int, *, anchors: str = "FW",
                     nucleotides: bool = False) -> tuple[np.ndarray, ...]:
    """n productive junctions drawn from `model` with `rng`.

    Returns (aa, lengths, v, j): aa is an (n, width) uint8 matrix of ASCII amino acids padded with
    zero bytes, lengths the junction lengths, v and j indices into model.v_names / j_names.
    `anchors` lists the accepted last residues (OLGA's own default also accepts V). With
    `nucleotides`, a fifth item: the junctions' nucleotides, an (n, 3 * width) matrix of ASCII
    ACGT padded with zero bytes (3 x lengths long); the amino acids drawn are the same.
    """
    anchor_codes = np.frombuffer(anchors.encode("ascii"), dtype=np.uint8)
    parts, total, accepted = [], 0, 0.6  # a first guess at the acceptance rate; learnt below
    while total < n:
        want = n - total
        draws = int(min(max(want / max(accepted, 0.01) * 1.1 + 64, 256), _MAX_DRAWS))
        part = _batch(model, rng, draws, anchor_codes, nucleotides)
        accepted = max(part[1].size / draws, 0.01)
        parts.append(part)
        total += part[1].size

    def stacked(k: int) -> np.ndarray:
        width = max(p[k].shape[1] for p in parts)
        return np.concatenate([np.pad(p[k], ((0, 0), (0, width - p[k].shape[1]))) for p in parts])[:n]

    lengths = np.concatenate([p[1] for p in parts])[:n]
    v = np.concatenate([p[2] for p in parts])[:n]
    j = np.concatenate([p[3] for p in parts])[:n]
    return (stacked(0), lengths, v, j) + ((stacked(4),) if nucleotides else ())


def translate(nt: str) -> str:
    """The amino acids of nt's complete codons, read from its first nucleotide ('*' for a stop)."""
    codes = _TCAG_CODE[_NT_CODE[np.frombuffer(nt[:len(nt) - len(nt) % 3].encode("ascii"), dtype=np.uint8)]]
    codons = codes.reshape(-1, 3)
    return _CODON_TABLE[16 * codons[:, 0] + 4 * codons[:, 1] + codons[:, 2]].tobytes().decode("ascii")


def nonproductive_junction(nt: str, rng: np.random.Generator) -> str:
    """The junction_aa of a productive junction `nt` (in frame, at least 6 codons) made non-productive.

    With probability 1/2 an internal codon (not the first or last) becomes a stop codon: a `*` in
    the translation. Otherwise 1-2 nucleotides are deleted at an internal position (a frameshift):
    the 5' part is translated in the V frame up to the codon hit, the 3' part in the J frame (read
    back from the end), joined by `_` as AIRR tools render out-of-frame junctions (CASS_GGAGNTIYF).
    """
    n_codons = len(nt) // 3
    if rng.random() < 0.5:
        codon = int(rng.integers(1, n_codons - 1))
        stop = _STOP_CODONS[int(rng.integers(len(_STOP_CODONS)))]
        return translate(nt[:3 * codon] + stop + nt[3 * codon + 3:])
    k = int(rng.integers(1, 3))
    at = int(rng.integers(3, len(nt) - 3 - k))
    shifted = nt[:at] + nt[at + k:]
    cut = (at // 3) * 3
    head, tail = shifted[:cut], shifted[cut:]
    return translate(head) + "_" + translate(tail[len(tail) % 3:])


def olga_version() -> str:
    """The installed olga package's version (recorded with a simulated cohort)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("olga")
    except PackageNotFoundError:
        return "unknown"
