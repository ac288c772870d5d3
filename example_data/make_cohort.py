#!/usr/bin/env python
"""Generate the small synthetic, labelled TRB cohort shipped in ``example_data/``.

This script is the exact recipe of the committed files' bytes (it draws from OLGA's own
generator) and is kept for that. To make new cohorts, use ``repclass simulate`` (or
``repclass.simulate.simulate_cohort`` from Python): faster, with several motifs, gaps,
substitutions, noise implants and other backgrounds. The closest equivalent of this cohort::

    repclass simulate --out my_cohort --repertoires 40 --positives 20 --sequences 3000-5000 \
        --witness-rate 0.01 --motif SFEN --seed 42

The cohort is meant for tests, tutorials and smoke runs of ``repclass``
(DeepRC-style attention-based multiple-instance learning). It contains:

* ``--n-repertoires`` repertoires (default 40), half of them labelled
  positive (``status`` = ``+``) and half negative (``-``), interleaved by a
  seeded shuffle. Sample ids are ``sample_01`` .. ``sample_40``.
* Per repertoire, a number of *unique* productive TRB clonotypes (unique
  ``junction_aa`` within the repertoire) drawn uniformly from
  ``[--min-sequences, --max-sequences]``, generated with OLGA's default human
  TRB VDJ model (Sethna et al. 2019). Clone counts (``duplicate_count``) are
  heavy-tailed Zipf draws, clipped to ``--max-count``.
* About ``--nonproductive-rate`` extra non-productive rows per repertoire
  (``productive`` = ``F``): OLGA sequences with either an in-frame stop codon
  (``*`` in ``junction_aa``) or a 1-2 nt frameshift deletion (rendered as
  ``<5' part>_<3' part>``, the 3' part translated in the J frame).
* A known motif (``--motif``, default ``SFEN``) implanted into a fraction
  ``--witness-rate`` (default 1%) of each *positive* repertoire's productive
  sequences: the motif overwrites ``len(motif)`` consecutive residues at a
  random position leaving at least 3 residues on each side, so the conserved
  C... and ...F/W anchors are untouched. With ``--substitution-rate`` > 0 each
  motif position is independently replaced by a random amino acid with that
  probability. Negatives are never implanted.
* Two extra, independent labels for multi-target demos: ``age`` (normal,
  mean 45, sd 15, rounded, clipped to [18, 90]) and ``hla_group``
  (``A``/``B``/``C``, uniform).

Outputs (under ``--out``)::

    repertoires/sample_XX.tsv.gz   AIRR rearrangement TSV (gzip), columns
                                   sequence_id, junction_aa, v_call, j_call,
                                   duplicate_count, productive, locus
    samples.tsv                    sample_id, status, age, hla_group
    implanted.tsv                  sample_id, sequence_id, junction_aa,
                                   motif_start (0-based, in junction_aa)

Determinism: everything is derived from ``--seed`` through
``numpy.random.SeedSequence``. Child seed 0 drives the cohort-level labels;
child seed ``i + 1`` drives repertoire ``i`` (OLGA draws from numpy's global
RNG, which is re-seeded from that child before each repertoire; every other
per-repertoire draw uses a ``numpy.random.Generator`` built from the same
child). gzip files are written with ``mtime=0`` and an empty file name, so a
rerun with the same options, numpy/OLGA/zlib versions is byte-identical.

Regenerate the committed files with::

    python example_data/make_cohort.py --out example_data

Requires numpy and olga (``pip install olga``; GPL-3.0 licensed software,
the generated data is ours).
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import sys
import time

import numpy as np

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
STOP_CODONS = ("TAA", "TAG", "TGA")
FLANK = 3  # residues that must remain before and after the implanted motif
AIRR_COLUMNS = (
    "sequence_id",
    "junction_aa",
    "v_call",
    "j_call",
    "duplicate_count",
    "productive",
    "locus",
)

DEFAULTS = dict(
    out="example_data",
    seed=42,
    n_repertoires=40,
    n_positive=None,
    min_sequences=3000,
    max_sequences=5000,
    nonproductive_rate=0.02,
    motif="SFEN",
    witness_rate=0.01,
    substitution_rate=0.0,
    zipf_a=2.2,
    max_count=1000,
    age_mean=45.0,
    age_sd=15.0,
)


# --------------------------------------------------------------------------
# OLGA
# --------------------------------------------------------------------------
def load_olga_trb():
    """Load OLGA's default human TRB model; return (generator, genV, genJ)."""
    import olga
    import olga.load_model as load_model
    import olga.sequence_generation as seq_gen

    model_dir = os.path.join(os.path.dirname(olga.__file__), "default_models", "human_T_beta")
    genomic = load_model.GenomicDataVDJ()
    genomic.load_igor_genomic_data(
        os.path.join(model_dir, "model_params.txt"),
        os.path.join(model_dir, "V_gene_CDR3_anchors.csv"),
        os.path.join(model_dir, "J_gene_CDR3_anchors.csv"),
    )
    generative = load_model.GenerativeModelVDJ()
    generative.load_and_process_igor_model(os.path.join(model_dir, "model_marginals.txt"))
    generator = seq_gen.SequenceGenerationVDJ(generative, genomic)
    v_names = [v[0] for v in genomic.genV]
    j_names = [j[0] for j in genomic.genJ]
    return generator, v_names, j_names


def translate(nt: str) -> str:
    """Translate complete codons of ``nt`` (reading frame 0)."""
    from olga.utils import nt2aa

    return nt2aa(nt[: len(nt) - len(nt) % 3])


def make_nonproductive(nt: str, rng: np.random.Generator) -> str:
    """Turn a productive junction (nt) into a non-productive junction_aa.

    Half the time an internal codon becomes a stop codon (``*``); otherwise
    1-2 nt are deleted at an internal position (frameshift): the 5' part is
    translated in the V frame, the 3' part in the J frame, joined by ``_``.
    """
    n_codons = len(nt) // 3
    if rng.random() < 0.5:
        c = int(rng.integers(1, n_codons - 1))
        stop = STOP_CODONS[int(rng.integers(len(STOP_CODONS)))]
        return translate(nt[: 3 * c] + stop + nt[3 * c + 3 :])
    k = int(rng.integers(1, 3))
    p = int(rng.integers(3, len(nt) - 3 - k))
    shifted = nt[:p] + nt[p + k :]
    cut = (p // 3) * 3
    head, tail = shifted[:cut], shifted[cut:]
    rest = len(tail) % 3  # != 0 since len(shifted) is not a multiple of 3
    return translate(head) + "_" + translate(tail[rest:])


# --------------------------------------------------------------------------
# Cohort construction
# --------------------------------------------------------------------------
def implant(seq: str, motif: str, start: int, rng: np.random.Generator, sub_rate: float) -> str:
    chars = list(motif)
    if sub_rate > 0:
        for i in range(len(chars)):
            if rng.random() < sub_rate:
                chars[i] = AMINO_ACIDS[int(rng.integers(len(AMINO_ACIDS)))]
    return seq[:start] + "".join(chars) + seq[start + len(motif) :]


def build_repertoire(sample_id, positive, seed_seq, generator, v_names, j_names, args):
    """Return (rows, implanted) for one repertoire."""
    np.random.seed(int(seed_seq.generate_state(1, dtype=np.uint32)[0]))  # OLGA's RNG
    rng = np.random.default_rng(seed_seq)

    n_prod = int(rng.integers(args.min_sequences, args.max_sequences + 1))
    n_nonprod = int(round(args.nonproductive_rate * n_prod))

    # unique productive clonotypes (unique junction_aa within the repertoire)
    junctions, v_calls, j_calls = [], [], []
    seen = set()
    while len(junctions) < n_prod:
        _nt, aa, v, j = generator.gen_rnd_prod_CDR3()
        if aa in seen:
            continue
        seen.add(aa)
        junctions.append(aa)
        v_calls.append(v_names[int(v)])
        j_calls.append(j_names[int(j)])

    # implant the motif into positives
    implanted = {}  # index into productive list -> motif_start
    if positive and args.witness_rate > 0:
        n_witness = max(1, int(round(args.witness_rate * n_prod)))
        min_len = len(args.motif) + 2 * FLANK
        for idx in rng.permutation(n_prod):
            if len(implanted) == n_witness:
                break
            idx = int(idx)
            seq = junctions[idx]
            if len(seq) < min_len:
                continue
            start = int(rng.integers(FLANK, len(seq) - FLANK - len(args.motif) + 1))
            new = implant(seq, args.motif, start, rng, args.substitution_rate)
            if new != seq and new in seen:  # keep clonotypes unique
                continue
            seen.discard(seq)
            seen.add(new)
            junctions[idx] = new
            implanted[idx] = start
        if len(implanted) < n_witness:
            raise RuntimeError(f"{sample_id}: could only implant {len(implanted)}/{n_witness}")

    counts = np.minimum(rng.zipf(args.zipf_a, size=n_prod + n_nonprod), args.max_count)

    # non-productive rows
    np_rows = []
    for _ in range(n_nonprod):
        nt, _aa, v, j = generator.gen_rnd_prod_CDR3()
        while len(nt) < 18:  # need room for an internal stop/frameshift
            nt, _aa, v, j = generator.gen_rnd_prod_CDR3()
        np_rows.append((make_nonproductive(nt, rng), v_names[int(v)], j_names[int(j)]))

    # interleave productive and non-productive rows, then assign ids
    entries = [(junctions[i], v_calls[i], j_calls[i], "T", i) for i in range(n_prod)]
    entries += [(aa, v, j, "F", None) for aa, v, j in np_rows]
    order = rng.permutation(len(entries))
    width = max(5, len(str(len(entries))))
    rows, implanted_rows = [], []
    for rank, e_idx in enumerate(order):
        aa, v, j, prod, p_idx = entries[int(e_idx)]
        seq_id = f"{sample_id}_{rank + 1:0{width}d}"
        rows.append((seq_id, aa, v, j, str(int(counts[rank])), prod, "TRB"))
        if p_idx is not None and p_idx in implanted:
            implanted_rows.append((sample_id, seq_id, aa, str(implanted[p_idx])))
    return rows, implanted_rows


def write_gz_tsv(path, header, rows):
    buf = io.StringIO()
    buf.write("\t".join(header) + "\n")
    for r in rows:
        buf.write("\t".join(r) + "\n")
    with open(path, "wb") as fh:
        with gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="", compresslevel=9) as gz:
            gz.write(buf.getvalue().encode("ascii"))


def write_tsv(path, header, rows):
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        fh.write("\t".join(header) + "\n")
        for r in rows:
            fh.write("\t".join(r) + "\n")


def parse_args(argv=None):
    d = DEFAULTS
    p = argparse.ArgumentParser(
        description=(
            "Generate a seeded, deterministic synthetic TRB cohort (OLGA human TRB "
            "model) with a motif implanted in the positive repertoires."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default=d["out"], help="output directory")
    p.add_argument("--seed", type=int, default=d["seed"], help="master random seed")
    p.add_argument("--n-repertoires", type=int, default=d["n_repertoires"], help="number of repertoires")
    p.add_argument(
        "--n-positive", type=int, default=d["n_positive"],
        help="number of positive repertoires; None means n_repertoires // 2 (20 of 40)",
    )
    p.add_argument("--min-sequences", type=int, default=d["min_sequences"],
                   help="min unique productive clonotypes per repertoire")
    p.add_argument("--max-sequences", type=int, default=d["max_sequences"],
                   help="max unique productive clonotypes per repertoire (inclusive)")
    p.add_argument("--nonproductive-rate", type=float, default=d["nonproductive_rate"],
                   help="extra non-productive rows, as a fraction of the productive count")
    p.add_argument("--motif", default=d["motif"], help="amino-acid motif implanted in positives")
    p.add_argument("--witness-rate", type=float, default=d["witness_rate"],
                   help="fraction of a positive repertoire's productive sequences that get the motif")
    p.add_argument("--substitution-rate", type=float, default=d["substitution_rate"],
                   help="per-position probability of replacing a motif residue by a random amino acid")
    p.add_argument("--zipf-a", type=float, default=d["zipf_a"],
                   help="Zipf exponent of the clone-count (duplicate_count) distribution")
    p.add_argument("--max-count", type=int, default=d["max_count"], help="cap on duplicate_count")
    p.add_argument("--age-mean", type=float, default=d["age_mean"], help="mean of the synthetic age label (rounded to int, clipped to [18, 90])")
    p.add_argument("--age-sd", type=float, default=d["age_sd"], help="sd of the synthetic age label")
    args = p.parse_args(argv)

    if args.n_positive is None:
        args.n_positive = args.n_repertoires // 2
    if not 0 <= args.n_positive <= args.n_repertoires:
        p.error("--n-positive must be within [0, n_repertoires]")
    if not 1 <= args.min_sequences <= args.max_sequences:
        p.error("need 1 <= --min-sequences <= --max-sequences")
    args.motif = args.motif.upper()
    if not args.motif or any(c not in AMINO_ACIDS for c in args.motif):
        p.error("--motif must be a non-empty string of the 20 standard amino acids")
    for name in ("nonproductive_rate", "witness_rate", "substitution_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            p.error(f"--{name.replace('_', '-')} must be in [0, 1]")
    if args.zipf_a <= 1.0:
        p.error("--zipf-a must be > 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    t0 = time.perf_counter()
    rep_dir = os.path.join(args.out, "repertoires")
    os.makedirs(rep_dir, exist_ok=True)

    generator, v_names, j_names = load_olga_trb()
    print(f"loaded OLGA human TRB model in {time.perf_counter() - t0:.2f}s", flush=True)

    n = args.n_repertoires
    children = np.random.SeedSequence(args.seed).spawn(n + 1)
    cohort_rng = np.random.default_rng(children[0])

    id_width = max(2, len(str(n)))
    sample_ids = [f"sample_{i + 1:0{id_width}d}" for i in range(n)]
    status = np.array(["+"] * args.n_positive + ["-"] * (n - args.n_positive))
    status = status[cohort_rng.permutation(n)]
    ages = np.clip(np.rint(cohort_rng.normal(args.age_mean, args.age_sd, size=n)), 18, 90).astype(int)
    hla = cohort_rng.choice(np.array(["A", "B", "C"]), size=n)

    samples_rows, implanted_all = [], []
    for i, sid in enumerate(sample_ids):
        t1 = time.perf_counter()
        positive = status[i] == "+"
        rows, imp = build_repertoire(sid, positive, children[i + 1], generator, v_names, j_names, args)
        write_gz_tsv(os.path.join(rep_dir, f"{sid}.tsv.gz"), AIRR_COLUMNS, rows)
        implanted_all.extend(imp)
        samples_rows.append((sid, str(status[i]), str(ages[i]), str(hla[i])))
        n_prod = sum(r[5] == "T" for r in rows)
        print(
            f"{sid} status={status[i]} productive={n_prod} nonproductive={len(rows) - n_prod} "
            f"implanted={len(imp)} ({time.perf_counter() - t1:.2f}s)",
            flush=True,
        )

    write_tsv(os.path.join(args.out, "samples.tsv"), ("sample_id", "status", "age", "hla_group"), samples_rows)
    write_tsv(
        os.path.join(args.out, "implanted.tsv"),
        ("sample_id", "sequence_id", "junction_aa", "motif_start"),
        implanted_all,
    )
    print(
        f"wrote {n} repertoires ({args.n_positive} positive), {len(implanted_all)} implanted sequences "
        f"to {args.out} in {time.perf_counter() - t0:.2f}s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
