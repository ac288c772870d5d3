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
OLGA's loop, which redraws a full scenario after every rejection.
"""
from __future__ import annotations

import functools
import gc
import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

log = logging.getLogger(__name__)

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
    cum_v: np.ndarray            # (nV,)
    cum_dj: np.ndarray           # (nD * nJ,) flattened P(D, J), J fastest
    n_j: int
    cum_del_v: np.ndarray        # (nV, n_delV)
    cum_del_j: np.ndarray        # (nJ, n_delJ)
    cum_del_d: np.ndarray        # (nD, n_delDl * n_delDr), delDr fastest
    n_del_dr: int
    cum_ins_vd: np.ndarray       # (max_ins + 1,)
    cum_ins_dj: np.ndarray
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
    v_seq, v_len = _segments(list(genomic.cutV_genomic_CDR3_segs))
    d_seq, d_len = _segments(list(genomic.cutD_genomic_CDR3_segs))
    j_seq, j_len = _segments(list(genomic.cutJ_genomic_CDR3_segs))
    return VDJModel(
        name=name, locus=locus,
        v_names=tuple(v[0] for v in genomic.genV), j_names=tuple(j[0] for j in genomic.genJ),
        cum_v=_normalised_cumulative(generative.PV),
        cum_dj=_normalised_cumulative(np.asarray(generative.PDJ).ravel()),
        n_j=int(generative.PDJ.shape[1]),
        cum_del_v=_normalised_cumulative(np.asarray(generative.PdelV_given_V).T),
        cum_del_j=_normalised_cumulative(np.asarray(generative.PdelJ_given_J).T),
        cum_del_d=_normalised_cumulative(np.transpose(p_del_d, (2, 0, 1)).reshape(p_del_d.shape[2], -1)),
        n_del_dr=int(p_del_d.shape[1]),
        cum_ins_vd=_normalised_cumulative(generative.PinsVD),
        cum_ins_dj=_normalised_cumulative(generative.PinsDJ),
        cum_first_vd=_normalised_cumulative(first_vd), cum_first_dj=_normalised_cumulative(first_dj),
        cum_next_vd=_normalised_cumulative(r_vd.T), cum_next_dj=_normalised_cumulative(r_dj.T),
        v_seq=v_seq, v_len=v_len, d_seq=d_seq, d_len=d_len, j_seq=j_seq, j_len=j_len,
    )


def _draw(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws from one distribution (first index whose cumulative reaches u)."""
    return np.minimum(np.searchsorted(cumulative, u), cumulative.shape[-1] - 1)


def _draw_rows(cumulative: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws from per-item distributions: item i from cumulative[rows[i]].

    One searchsorted over all rows at once: row r's cumulative values are shifted by r, so the
    flattened table stays sorted and u + r can only land in row r (or, for a row whose sum falls
    a rounding error short of 1, just past it: clipped to the row's last entry).
    """
    n_rows, n_cols = cumulative.shape
    shifted = (cumulative + np.arange(n_rows)[:, None]).ravel()
    index = np.searchsorted(shifted, u + rows) - rows * n_cols
    return np.minimum(index, n_cols - 1)


def _insertions(rng: np.random.Generator, lengths: np.ndarray, cum_first: np.ndarray,
                cum_next: np.ndarray) -> np.ndarray:
    """(n, max(lengths)) nucleotide codes of Markov-chain insertions (entries past a row's length unused)."""
    width = int(lengths.max(initial=0))
    out = np.zeros((lengths.size, max(width, 1)), dtype=np.uint8)
    if width == 0:
        return out
    u = rng.random((width, lengths.size))                                    # column-major: one row per step
    out[:, 0] = _draw(cum_first, u[0])
    # The chain has 4 states: the next state is how many of the previous state's first three
    # cumulative thresholds u exceeds (searchsorted's "first index reaching u").
    thresholds = [np.ascontiguousarray(cum_next[:, k]) for k in range(3)]
    previous = out[:, 0].astype(np.intp)
    for column in range(1, width):
        step = u[column]
        nxt = ((step > thresholds[0][previous]).view(np.uint8) + (step > thresholds[1][previous]).view(np.uint8)
               + (step > thresholds[2][previous]).view(np.uint8))
        out[:, column] = nxt
        previous = nxt.astype(np.intp)
    return out


def _batch(model: VDJModel, rng: np.random.Generator, n: int, anchors: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw n scenarios; return the productive ones as (aa bytes (m, w) zero-padded, aa lengths, V, J)."""
    u = rng.random((n, 7))
    v = _draw(model.cum_v, u[:, 0])
    dj = _draw(model.cum_dj, u[:, 1])
    d, j = dj // model.n_j, dj % model.n_j
    del_v = _draw_rows(model.cum_del_v, v, u[:, 2])
    del_j = _draw_rows(model.cum_del_j, j, u[:, 3])
    del_d = _draw_rows(model.cum_del_d, d, u[:, 4])
    del_dl, del_dr = del_d // model.n_del_dr, del_d % model.n_del_dr
    ins_vd = _draw(model.cum_ins_vd, u[:, 5])
    ins_dj = _draw(model.cum_ins_dj, u[:, 6])
    len_v = model.v_len[v] - del_v
    len_d = model.d_len[d] - del_dl - del_dr
    len_j = model.j_len[j] - del_j
    total = len_v + ins_vd + len_d + ins_dj + len_j
    # Segments long enough for their deletions, in frame, and at least two codons (C...F).
    keep = (len_v > 0) & (len_d >= 0) & (len_j >= 0) & (total % 3 == 0) & (total >= 6)
    v, d, j, del_dl, del_j = v[keep], d[keep], j[keep], del_dl[keep], del_j[keep]
    len_v, ins_vd, len_d, ins_dj, len_j = len_v[keep], ins_vd[keep], len_d[keep], ins_dj[keep], len_j[keep]
    total = total[keep]
    m = v.size
    if m == 0:
        return np.zeros((0, 1), np.uint8), np.zeros(0, np.int64), v, j

    n1 = _insertions(rng, ins_vd, model.cum_first_vd, model.cum_next_vd)   # (m, max N1)
    n2 = _insertions(rng, ins_dj, model.cum_first_dj, model.cum_next_dj)   # (m, max N2), J side first
    # The junctions are assembled end to end in one flat array (no padding). Position p of a
    # junction lies in one of five segments (V, N1, D, N2, J), all laid end to end in `source`;
    # segment s of junction i reads source[a[i, s] + sign[s] * p].
    source = np.concatenate([model.v_seq.ravel(), model.d_seq.ravel(), model.j_seq.ravel(), n1.ravel(),
                             n2.ravel()])
    at_d = model.v_seq.size
    at_j = at_d + model.d_seq.size
    at_n1 = at_j + model.j_seq.size
    at_n2 = at_n1 + n1.size
    rows = np.arange(m, dtype=np.int64)
    b1 = len_v
    b2 = b1 + ins_vd
    b3 = b2 + len_d
    b4 = b3 + ins_dj
    a = np.stack([v * model.v_seq.shape[1],                                   # V from its start
                  at_n1 + rows * n1.shape[1] - b1,                            # N1
                  at_d + d * model.d_seq.shape[1] + del_dl - b2,              # D after its 5' deletion
                  at_n2 + rows * n2.shape[1] + b4 - 1,                        # N2, read backwards
                  at_j + j * model.j_seq.shape[1] + del_j - b4], axis=1)      # (m, 5)
    segment_length = np.stack([len_v, ins_vd, len_d, ins_dj, len_j], axis=1).ravel()  # (5m,)
    sign = np.tile(np.array([1, 1, 1, -1, 1], dtype=np.int64), m)
    start = np.cumsum(total) - total                                          # (m,) offsets
    position = np.arange(int(total.sum()), dtype=np.int64) - np.repeat(start, total)  # (T,) p in its junction
    index = np.repeat(a.ravel(), segment_length) + np.repeat(sign, segment_length) * position
    codons = _TCAG_CODE[source[index]].reshape(-1, 3)                         # (T/3, 3) TCAG codes
    aa = _CODON_TABLE[16 * codons[:, 0] + 4 * codons[:, 1] + codons[:, 2]]    # (T/3,) flat amino acids

    aa_len = total // 3
    aa_start = start // 3
    ok = (~np.logical_or.reduceat(aa == _STOP, aa_start) & (aa[aa_start] == ord("C"))
          & np.isin(aa[aa_start + aa_len - 1], anchors))
    # Kept junctions into a zero-padded (k, longest) matrix.
    lengths = aa_len[ok]
    k = lengths.size
    out = np.zeros((k, max(1, int(lengths.max(initial=1)))), dtype=np.uint8)
    kept_start = np.cumsum(lengths) - lengths
    out[np.repeat(np.arange(k), lengths), np.arange(int(lengths.sum())) - np.repeat(kept_start, lengths)] = \
        aa[np.repeat(ok, aa_len)]
    return out, lengths, v[ok], j[ok]


def sample_junctions(model: VDJModel, rng: np.random.Generator, n: int, *, anchors: str = "FW"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n productive junctions drawn from `model` with `rng`.

    Returns (aa, lengths, v, j): aa is an (n, width) uint8 matrix of ASCII amino acids padded with
    zero bytes, lengths the junction lengths, v and j indices into model.v_names / j_names.
    `anchors` lists the accepted last residues (OLGA's own default also accepts V).
    """
    anchor_codes = np.frombuffer(anchors.encode("ascii"), dtype=np.uint8)
    parts, total, accepted = [], 0, 0.25  # a first guess at the acceptance rate; learnt below
    while total < n:
        want = n - total
        draws = int(min(max(want / max(accepted, 0.01) * 1.1 + 64, 256), _MAX_DRAWS))
        aa, lengths, v, j = _batch(model, rng, draws, anchor_codes)
        accepted = max(lengths.size / draws, 0.01)
        parts.append((aa, lengths, v, j))
        total += lengths.size
    width = max(p[0].shape[1] for p in parts)
    aa = np.concatenate([np.pad(p[0], ((0, 0), (0, width - p[0].shape[1]))) for p in parts])[:n]
    lengths = np.concatenate([p[1] for p in parts])[:n]
    v = np.concatenate([p[2] for p in parts])[:n]
    j = np.concatenate([p[3] for p in parts])[:n]
    return aa, lengths, v, j


def olga_version() -> str:
    """The installed olga package's version (recorded with a simulated cohort)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("olga")
    except PackageNotFoundError:
        return "unknown"
