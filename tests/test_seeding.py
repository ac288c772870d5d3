"""Kernels and attention seeded from label-associated k-mers (repclass.training.seeding), and the low-witness
training they make possible."""
import numpy as np
import polars as pl
import pytest
import torch

from repclass.alphabet import AMINO_ACIDS
from repclass.config import ModelConfig, TrainConfig
from repclass.model.data import encode_sequences, encode_table
from repclass.model.deeprc import DeepRC
from repclass.training.seeding import (associate_kmers, kmer_presence, kmer_text, point_attention,
                                       point_output, seed_kernels)


def _encoded(sequences: list[str]):
    return encode_table(pl.DataFrame({"junction_aa": sequences}))


def _random_sequences(rng: np.random.Generator, n: int, low: int = 10, high: int = 18) -> list[str]:
    letters = np.array(list(AMINO_ACIDS))
    return ["C" + "".join(rng.choice(letters, int(rng.integers(low, high)) - 2)) + "F" for _ in range(n)]


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_kmer_presence_counts_every_window(k):
    sequences = _random_sequences(np.random.default_rng(k), 200, low=3) + ["CA", "C"]
    expected = np.zeros(20 ** k, dtype=np.int64)
    for sequence in sequences:
        for start in range(len(sequence) - k + 1):
            kmer_id = 0
            for letter in sequence[start:start + k]:
                kmer_id = kmer_id * 20 + AMINO_ACIDS.index(letter)
            expected[kmer_id] += 1
    np.testing.assert_array_equal(kmer_presence(_encoded(sequences), k), expected)
    assert kmer_text(AMINO_ACIDS.index("W") * 20 + AMINO_ACIDS.index("Q"), 2) == "WQ"


@pytest.mark.parametrize("k, n_sequences", [(2, 50), (4, 300), (4, 20_000), (5, 2_000)])
def test_sparse_kmer_counts_match_the_dense_count(k, n_sequences):
    # a sorted count where k-mers far outnumber windows (5-mers), a dense one elsewhere: the same counts
    from repclass.training.seeding import sparse_kmer_counts

    repertoire = _encoded(_random_sequences(np.random.default_rng(k), n_sequences, low=3) + ["CA", "C"])
    dense = kmer_presence(repertoire, k)
    kmers, counts = sparse_kmer_counts(repertoire, k)
    np.testing.assert_array_equal(kmers, np.flatnonzero(dense))
    np.testing.assert_array_equal(counts, dense[kmers])


def _cohort(rng, motif: str, n_repertoires: int = 20, n_sequences: int = 2000, witnesses: int = 4):
    repertoires, labels = [], []
    for index in range(n_repertoires):
        positive = index % 2 == 0
        sequences = _random_sequences(rng, n_sequences)
        if positive:
            for row in range(witnesses):
                sequences[row] = sequences[row][:4] + motif + sequences[row][4 + len(motif):]
        repertoires.append(_encoded(sequences))
        labels.append(1.0 if positive else 0.0)
    return repertoires, np.array(labels)[:, None]


def test_association_ranks_the_implanted_motif_first():
    # 4 witnesses in 2,000 sequences (0.2%): the motif's 4-mer tops 160,000 candidates.
    rng = np.random.default_rng(0)
    repertoires, labels = _cohort(rng, "WQRY")
    association = associate_kmers(repertoires, labels, np.ones_like(labels, dtype=bool), 4, 5)
    assert association.kmers[0] == "WQRY"
    assert association.scores[0] > 2 * association.scores[1]
    assert association.support[0] >= 10


@pytest.mark.parametrize("positive_class", [1.0, 0.0])
def test_association_knows_which_class_a_kmer_marks_and_the_output_starts_that_way(positive_class):
    """A motif of the positives has sign +1, of the negatives -1, and the output network's weight
    from its kernel starts with that sign (a random sign sent the attention away from the
    witnesses on one 0.05% cohort in three)."""
    rng = np.random.default_rng(1)
    repertoires, labels = _cohort(rng, "WQRY")
    labels = labels if positive_class else 1.0 - labels  # the motif now marks the negatives
    association = associate_kmers(repertoires, labels, np.ones_like(labels, dtype=bool), 4, 3)
    assert association.kmers[0] == "WQRY" and association.columns[0] == 0
    assert association.signs[0] == (1 if positive_class else -1)
    torch.manual_seed(0)
    model = DeepRC(ModelConfig(n_kernels=8))
    assert point_output(model.output, [0, 1, 2], association.signs, association.columns)
    assert np.sign(float(model.output[0].weight[0, 0].detach())) == association.signs[0]
    hidden = DeepRC(ModelConfig(n_kernels=8, output_layers=1))
    before = hidden.output[0].weight.clone()
    assert not point_output(hidden.output, [0], association.signs, association.columns)  # left as it was
    assert torch.equal(hidden.output[0].weight, before)


def test_a_5mer_motif_is_seeded_as_a_5mer_and_a_4mer_motif_as_a_4mer():
    """With lengths 4 and 5 competing (the default), each motif gets one kernel of its own length:
    the 5-mer HMKPE, whose 4-mers are also common in both classes (a motif's k-mers left in the
    background), is not split over HMKP and MKPE; the 4-mer WQRY is not split over its 5-mers."""
    rng = np.random.default_rng(4)
    letters = [a for a in AMINO_ACIDS if a != "E"]
    repertoires, labels = [], []
    for index in range(24):
        positive = index % 2 == 0
        sequences = _random_sequences(rng, 2000, low=14)
        for row in range(40, 70):  # HMKP and MKPE without HMKPE, in every repertoire
            decoy = "HMKP" + str(rng.choice(letters)) if row % 2 else str(rng.choice(letters[1:])) + "MKPE"
            sequences[row] = sequences[row][:4] + decoy + sequences[row][9:]
        if positive:
            for row in range(6):
                motif = "HMKPE" if row % 2 else "WQRY"
                sequences[row] = sequences[row][:4] + motif + sequences[row][4 + len(motif):]
        repertoires.append(_encoded(sequences))
        labels.append([1.0 if positive else 0.0])
    labels = np.array(labels)
    present = np.ones_like(labels, dtype=bool)
    both = associate_kmers(repertoires, labels, present, (4, 5), 8)
    assert set(both.kmers[:2]) == {"HMKPE", "WQRY"}
    assert not any(("HMKP" in kmer or "MKPE" in kmer or "WQRY" in kmer) for kmer in both.kmers[2:])
    assert both.scores[1] > both.scores[0] / 2  # a clear candidate: training gives it a head start
    four = associate_kmers(repertoires, labels, present, 4, 8)  # 4-mers alone miss the 5-mer motif
    assert four.kmers[0] == "WQRY" and not {"HMKP", "MKPE"} & set(four.kmers)
    assert associate_kmers(repertoires, labels, present, [5, 4, 4], 8).kmers == both.kmers


def test_only_kmers_above_the_shuffled_labels_chance_level_are_clear_candidates():
    """The implanted motif is a clear candidate; the next k-mers, which reach a third to half of its
    |t| by chance in a cohort of 20, are not (one of them, given a head start, became a negative
    class marker that training built on and a second motif was let go, docs/method.md); with
    labels that say nothing, nothing is."""
    rng = np.random.default_rng(5)
    repertoires, labels = _cohort(rng, "WQRY")
    present = np.ones_like(labels, dtype=bool)
    association = associate_kmers(repertoires, labels, present, 4, 8)
    assert association.kmers[0] == "WQRY"
    assert association.scores[0] > association.chance > association.scores[1] > association.scores[0] / 3
    assert association.clear_candidates().tolist() == [True] + [False] * 7
    unrelated = np.array([[1.0], [1.0], [0.0], [0.0]] * 5)  # half the positives, half the negatives
    assert not associate_kmers(repertoires, unrelated, present, 4, 8).clear_candidates().any()
    again = associate_kmers(repertoires, labels, present, 4, 8)
    assert again.chance == association.chance  # seeded shufflings
    assert associate_kmers(repertoires, labels, present, 4, 8, seed=1).chance != association.chance


def test_association_ignores_unknown_labels_and_private_kmers():
    rng = np.random.default_rng(1)
    repertoires, labels = _cohort(rng, "WQRY")
    present = np.ones_like(labels, dtype=bool)
    present[::2] = False  # every positive label unknown: nothing to associate with
    assert associate_kmers(repertoires, labels, present, 4, 5).kmers == []
    # a k-mer in two positive repertoires only is a private sequence, never a seed
    def background(n):
        return [s for s in _random_sequences(rng, n) if "WWWW" not in s]

    private = [_encoded(background(500)) for _ in range(8)]
    for index in (0, 2):
        private[index] = _encoded(["CWWWWWWF"] * 50 + background(450))
    labels = np.array([[1.0], [0.0]] * 4)
    assert "WWWW" not in associate_kmers(private, labels, np.ones_like(labels, dtype=bool), 4, 20).kmers


def test_seeded_kernel_detects_its_kmer_and_attention_favours_it():
    torch.manual_seed(0)
    model = DeepRC(ModelConfig())
    seed_kernels(model.conv_weight, model.conv_bias, ["WQRY"], amplitude=0.5)
    rng = np.random.default_rng(2)
    background = [s for s in _random_sequences(rng, 2000) if "WQRY" not in s]
    # (a valid convolution sees a k-mer at the kernel's centre when it starts 2 to L - 7 residues in)
    witnesses = [s[:3] + "WQRY" + s[7:] for s in _random_sequences(rng, 50, low=12)]
    codes, lengths = encode_sequences(pl.Series(background + witnesses))
    with torch.no_grad():
        embeddings = model.embed(torch.from_numpy(codes), torch.from_numpy(lengths.astype(np.int64)))
    detector = embeddings[:, 0]
    assert detector[len(background):].min() > detector[:len(background)].max()
    full = embeddings[len(background):].mean(dim=0)
    point_attention(model.attention, [0], np.array([1.0]), embeddings[:len(background)].mean(dim=0), full, gain=5.0)
    with torch.no_grad():
        logits = model.attention_logits(embeddings)
    assert logits[len(background):].mean() - logits[:len(background)].mean() > 4.0
    assert logits[len(background):].min() > torch.quantile(logits[:len(background)], 0.99)


def test_seeded_attention_prefers_full_matches_to_near_misses():
    """Near misses (3 of the 4 residues) are ~80x more common than the k-mer: with the default
    amplitude they must get far less attention than full matches, or they take it from witnesses."""
    torch.manual_seed(0)
    model = DeepRC(ModelConfig())
    seed_kernels(model.conv_weight, model.conv_bias, ["WQRY"], amplitude=TrainConfig().init_kmer_amplitude)
    rng = np.random.default_rng(3)
    background = [s for s in _random_sequences(rng, 2000) if "WQRY" not in s]
    hosts = _random_sequences(rng, 40, low=12)
    witnesses = [s[:3] + "WQRY" + s[7:] for s in hosts]
    near_misses = [s[:3] + "WQRY"[:i] + "A" + "WQRY"[i + 1:] + s[7:] for s in hosts for i in range(4)]
    codes, lengths = encode_sequences(pl.Series(background + witnesses + near_misses))
    with torch.no_grad():
        embeddings = model.embed(torch.from_numpy(codes), torch.from_numpy(lengths.astype(np.int64)))
    n_background, n_witnesses = len(background), len(witnesses)
    point_attention(model.attention, [0], np.array([1.0]), embeddings[:n_background].mean(dim=0),
                    embeddings[n_background:n_background + n_witnesses].mean(dim=0), gain=5.0)
    with torch.no_grad():
        logits = model.attention_logits(embeddings)
    full = logits[n_background:n_background + n_witnesses]
    near = logits[n_background + n_witnesses:]
    # weight of one full match against one near miss: e^4 = 55; the 80x more near misses must not outweigh it
    assert full.mean() - near.mean() > 4.0
    assert full.min() > near.max()


@pytest.mark.parametrize("layers", [0, 1, 2])
def test_point_attention_for_any_depth(layers):
    torch.manual_seed(layers)
    model = DeepRC(ModelConfig(attention_layers=layers))
    background, full = torch.zeros(32) - 1.0, torch.zeros(32)
    full[3] = 1.0
    point_attention(model.attention, [3], np.array([1.0]), background, full, gain=4.0)
    witness, plain = background.clone(), background.clone()
    witness[3] = 1.0
    with torch.no_grad():
        difference = model.attention(witness[None])[0, 0] - model.attention(plain[None])[0, 0]
    assert difference == pytest.approx(4.0 * 1.0507 ** layers, rel=1e-3)


@pytest.mark.skipif(__import__("importlib").util.find_spec("olga") is None, reason="needs olga (pip install olga)")
def test_low_witness_cohort_is_learned_with_the_defaults(tmp_path):
    # Two random motifs, gaps and substitutions, in 0.2% of the positives' sequences (about 8 of
    # 4,000), noise implants in negatives. A random start stays at chance here for thousands of
    # updates; the k-mer-seeded defaults learn it in a few hundred (issue 9).
    from repclass import ingest
    from repclass.config import TrainConfig
    from repclass.simulation.run import SimulationConfig, simulate_cohort
    from repclass.training.loop import train

    cohort = simulate_cohort(tmp_path / "cohort", SimulationConfig(
        n_repertoires=48, min_sequences=3_500, max_sequences=4_500, witness_rate=0.002, motifs=(),
        random_motifs=2, random_motif_length=(4, 5), gap_probability=0.3, substitution_probability=0.05,
        noise_rate=0.002, seed=3))
    store = ingest(cohort.samples_path, tmp_path / "cohort.store", [cohort.repertoire_dir])
    result = train(store, tmp_path / "model", targets=["status"], device="cpu",
                   config=TrainConfig(max_updates=600, eval_every=50, patience=4, validation_fraction=0.25,
                                      test_fraction=0.25, seed=0))
    assert result.metrics["test"]["status"]["roc_auc"] >= 0.85
    assert result.metrics["validation"]["status"]["roc_auc"] >= 0.85


def test_the_evidence_start_is_the_logistic_fit_with_offsets():
    from repclass.training.seeding import fit_evidence_start

    rng = np.random.default_rng(0)
    labels = np.array([1.0] * 20 + [0.0] * 20)
    evidence = labels * 1.0 + rng.normal(0, 0.7, 40)  # more evidence in the positives, overlapping
    offsets = rng.normal(0, 0.3, 40)
    slope, shift = fit_evidence_start(evidence, offsets, labels)
    assert slope > 0
    probability = 1 / (1 + np.exp(-(offsets + slope * evidence + shift)))
    # a fitted logistic regression with an intercept predicts the class share on its data
    assert probability.mean() == pytest.approx(labels.mean(), abs=1e-4)
    reversed_slope, _ = fit_evidence_start(-evidence, offsets, labels)
    assert reversed_slope == pytest.approx(-slope, rel=1e-3)
    # perfectly separated: finite (the prior on the slope)
    separated_slope, _ = fit_evidence_start(labels * 3.0, np.zeros(40), labels)
    assert 0 < separated_slope < 10
    assert fit_evidence_start(np.ones(40), offsets, labels) == (0.0, 0.0)
    assert fit_evidence_start(evidence, offsets, np.ones(40)) == (0.0, 0.0)
