"""DeepRC model: the fast embedding equals the dense reference, masking, attention, top-k."""
import numpy as np
import pytest
import torch

from repclass.alphabet import PAD_CODE
from repclass.config import ModelConfig
from repclass.model.deeprc import DeepRC, position_features, top_k_per_bag
from support.reference import reference_embed, reference_forward


def random_batch(n, seed, min_length=3, max_length=25, width=None):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_length, max_length + 1, (n,), generator=generator)
    width = width or int(lengths.max())
    codes = torch.full((n, width), PAD_CODE, dtype=torch.uint8)
    for i, length in enumerate(lengths.tolist()):
        codes[i, :length] = torch.randint(0, 20, (length,), generator=generator, dtype=torch.uint8)
    return codes, lengths


def random_model(seed, **settings):
    torch.manual_seed(seed)
    model = DeepRC(ModelConfig(**{"enrichment": False, **settings}))  # the attention model: no set to read
    with torch.no_grad():  # weights far from the small initialisation, so every term matters
        # (the count read-out's weight last, so that the other parameters get the draws they always
        # had: a draw with two windows within 1e-6 of each other makes the max's gradient ambiguous)
        for name, parameter in sorted(model.named_parameters(), key=lambda item: item[0] == "evidence_weight"):
            parameter.normal_(0, 0.5)
    return model


def relative_error(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_embedding_equals_dense_reference(seed):
    model = random_model(seed)
    codes, lengths = random_batch(2000, seed)
    fast = model.embed(codes, lengths, chunk_size=300)
    dense = reference_embed(model, codes, lengths)
    assert relative_error(fast, dense) < 1e-5


@pytest.mark.parametrize("settings", [{}, {"count_readout": True},
                                      {"use_counts": True, "output_layers": 1}, {"kernel_size": 5, "n_kernels": 8},
                                      {"embedding": "lstm", "n_kernels": 8},
                                      {"embedding": "lstm", "use_counts": True, "output_layers": 1},
                                      {"count_readout": True, "use_counts": True, "output_layers": 1},
                                      {"count_readout": True, "evidence_gradient": True}])
def test_outputs_and_gradients_equal_reference(settings):
    model = random_model(3, n_outputs=2, **settings)
    codes, lengths = random_batch(600, 3)
    bag_index = torch.randint(0, 3, (600,), generator=torch.Generator().manual_seed(1))
    counts = torch.randint(1, 50, (600,)).float()
    # the bags' top-k were chosen from 10 times as many sequences (the count read-out's denominator)
    bag_sizes = 10 * torch.bincount(bag_index, minlength=3)
    fast = model(codes, lengths, bag_index, 3, counts, chunk_size=128, bag_sizes=bag_sizes)
    dense = reference_forward(model, codes, lengths, bag_index, 3, counts, bag_sizes=bag_sizes)
    assert relative_error(fast, dense) < 1e-5
    weights = torch.randn_like(fast)
    fast_grads = torch.autograd.grad((fast * weights).sum(), list(model.parameters()))
    dense_grads = torch.autograd.grad((dense * weights).sum(), list(model.parameters()))
    scale = max(float(g.abs().max()) for g in dense_grads)
    fast, dense = fast.detach(), dense.detach()
    for (name, _), a, b in zip(model.named_parameters(), fast_grads, dense_grads):
        # relative to the largest gradient: the last attention bias has a true gradient of 0
        assert float((a - b).abs().max()) <= 1e-5 * scale, name


@pytest.mark.parametrize("taps_per_row", [1, 2, 3])
@pytest.mark.parametrize("kernel_size", [9, 4, 1])
def test_every_grouping_of_taps_equals_the_reference(monkeypatch, taps_per_row, kernel_size):
    """Look-up rows that sum 1, 2 or 3 adjacent taps (the last group shorter when the width is not
    a multiple) give the dense convolution's embeddings and gradients, in and out of scoring."""
    from repclass.model.embedding import ConvolutionEmbedding

    monkeypatch.setattr(ConvolutionEmbedding, "taps_per_row", taps_per_row)
    model = random_model(4, kernel_size=kernel_size, n_kernels=8)
    codes, lengths = random_batch(700, 4, min_length=1)
    fast = model.embed(codes, lengths, chunk_size=128)
    dense = reference_embed(model, codes, lengths)
    assert relative_error(fast, dense) < 1e-5
    weights = torch.randn_like(fast)
    fast_grad, = torch.autograd.grad((fast * weights).sum(), [model.conv_weight])
    dense_grad, = torch.autograd.grad((dense * weights).sum(), [model.conv_weight])
    assert relative_error(fast_grad, dense_grad) < 1e-5
    order = torch.sort(lengths, stable=True).indices
    with torch.no_grad():
        chunks = model.embed(codes[order], lengths[order], chunk_size=100, presorted=True)
    assert relative_error(chunks, dense[order]) < 1e-5


def test_padding_never_changes_a_result():
    model = random_model(4)
    codes, lengths = random_batch(300, 4, max_length=18)
    wide = torch.full((300, 40), PAD_CODE, dtype=torch.uint8)
    wide[:, : codes.shape[1]] = codes
    bag_index = torch.arange(300) % 2
    narrow_out = model(codes, lengths, bag_index, 2)
    wide_out = model(wide, lengths, bag_index, 2, chunk_size=7)
    assert torch.allclose(narrow_out, wide_out, rtol=1e-6, atol=1e-6)
    # one sequence scored alone equals the same sequence inside a big batch
    alone = model.embed(codes[:1, : int(lengths[0])], lengths[:1])
    assert torch.allclose(alone, model.embed(wide, lengths)[:1], rtol=1e-6, atol=1e-6)


def test_sequences_shorter_than_the_kernel():
    model = random_model(5)
    codes, lengths = random_batch(50, 5, min_length=1, max_length=8)
    assert relative_error(model.embed(codes, lengths), reference_embed(model, codes, lengths)) < 1e-5


def test_attention_sums_to_one_per_bag():
    logits = torch.randn(1000)
    bag_index = torch.randint(0, 7, (1000,))
    weights = DeepRC.attention_weights(logits, bag_index, 7)
    sums = torch.zeros(7).index_add(0, bag_index, weights)
    assert torch.allclose(sums, torch.ones(7), atol=1e-6)
    assert (weights >= 0).all()


def test_top_k_per_bag_keeps_the_best_fraction():
    logits = torch.tensor([5.0, 1.0, 3.0, 2.0, 9.0, 0.0, 4.0, 8.0])
    bag_index = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    kept = top_k_per_bag(logits, bag_index, 2, 0.5)
    assert kept.tolist() == [0, 2, 4, 7]
    assert top_k_per_bag(logits, bag_index, 2, 0.01).tolist() == [0, 4]  # at least one per bag


@pytest.mark.parametrize("count_readout", [False, True])
def test_top_k_with_all_sequences_matches_unreduced_model(count_readout):
    from repclass.model.data import EncodedRepertoire
    from repclass.model.scoring import score_repertoire

    model = random_model(6, reduction_fraction=1.0, count_readout=count_readout)
    codes, lengths = random_batch(700, 6)
    repertoire = EncodedRepertoire(codes.numpy(), lengths.numpy(), np.ones(700, dtype=np.int64))
    scored = score_repertoire(model, repertoire, torch.device("cpu"), chunk_size=64, block_size=100)
    with torch.no_grad():
        unreduced = model(codes, lengths, torch.zeros(700, dtype=torch.long), 1)
    assert np.allclose(scored.outputs, unreduced[0].numpy(), rtol=1e-5, atol=1e-6)
    assert abs(scored.weights.sum() - 1) < 1e-5


def test_scoring_in_blocks_equals_one_block():
    from repclass.model.data import EncodedRepertoire
    from repclass.model.scoring import score_repertoire

    model = random_model(7)
    codes, lengths = random_batch(5000, 7)
    repertoire = EncodedRepertoire(codes.numpy(), lengths.numpy(), np.ones(5000, dtype=np.int64))
    one = score_repertoire(model, repertoire, torch.device("cpu"), block_size=10_000)
    many = score_repertoire(model, repertoire, torch.device("cpu"), chunk_size=100, block_size=333)
    assert np.allclose(one.outputs, many.outputs, rtol=1e-5, atol=1e-6)
    assert set(one.rows.tolist()) == set(many.rows.tolist())
    assert len(one.rows) == 500


def test_position_features_match_the_paper():
    features = position_features(torch.tensor([5]), 7)[0]  # (3, 7)
    assert torch.allclose(features[2, :5], torch.tensor([0.0, 0.5, 1.0, 0.5, 0.0]))  # centre peak
    assert torch.allclose(features[0, :5], torch.tensor([1.0, 0.5, 0.0, 0.0, 0.0]))  # first half ramp
    assert torch.allclose(features[1, :5], torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0]))  # second half ramp
    assert features[:, 5:].abs().sum() == 0


def test_same_seed_same_weights():
    torch.manual_seed(11)
    a = DeepRC(ModelConfig()).state_dict()
    torch.manual_seed(11)
    b = DeepRC(ModelConfig()).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_counts_do_not_erase_singletons():
    model = random_model(8, use_counts=True)
    with torch.no_grad():
        model.count_scale.fill_(1.0)  # its initial value
    codes, lengths = random_batch(10, 8)
    embeddings = model.embed(codes, lengths)
    singletons = model.attention_logits(embeddings, torch.ones(10))
    assert torch.allclose(singletons, model.attention(embeddings).squeeze(-1))
    more = model.attention_logits(embeddings, torch.full((10,), 100.0))
    assert (more > singletons).all()  # expanded clones weigh more


def test_second_pass_equals_kept_embeddings(monkeypatch):
    """Repertoires too large to keep every embedding embed their top-k again: same result."""
    from repclass.model import scoring
    from repclass.model.data import EncodedRepertoire

    model = random_model(9)
    codes, lengths = random_batch(3000, 9)
    repertoire = EncodedRepertoire(codes.numpy(), lengths.numpy(), np.ones(3000, dtype=np.int64))
    kept = scoring.score_repertoire(model, repertoire, torch.device("cpu"), block_size=700)
    monkeypatch.setattr(scoring, "KEEP_BYTES", 0)
    again = scoring.score_repertoire(model, repertoire, torch.device("cpu"), block_size=700)
    assert np.allclose(kept.outputs, again.outputs, rtol=1e-6, atol=1e-7)
    assert (kept.rows == again.rows).all()


def test_scoring_equals_the_model_on_the_top_k_with_the_repertoire_size():
    """Scoring a whole repertoire is the model on its top 10% by attention, the count read-out's
    mean taken over all of its sequences: what training's gradient pass computes."""
    from repclass.model.data import EncodedRepertoire
    from repclass.model.scoring import score_repertoire

    model = random_model(10, n_outputs=2, count_readout=True)
    codes, lengths = random_batch(3000, 10)
    repertoire = EncodedRepertoire(codes.numpy(), lengths.numpy(), np.ones(3000, dtype=np.int64))
    scored = score_repertoire(model, repertoire, torch.device("cpu"), block_size=700)
    top = torch.from_numpy(np.sort(scored.rows))
    assert len(top) == 300
    with torch.no_grad():
        direct = model(codes[top], lengths[top], torch.zeros(300, dtype=torch.long), 1, bag_sizes=torch.tensor([3000]))
        without_size = model(codes[top], lengths[top], torch.zeros(300, dtype=torch.long), 1)
    assert np.allclose(scored.outputs, direct[0].numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(scored.outputs, without_size[0].numpy(), rtol=1e-3, atol=1e-3)


def test_count_readout_starts_as_the_papers_and_then_counts_witnesses():
    codes, lengths = random_batch(1000, 11)
    bag_index = torch.arange(1000) % 4
    torch.manual_seed(12)
    fresh_paper = DeepRC(ModelConfig(count_readout=False, enrichment=False))
    torch.manual_seed(12)
    fresh_counting = DeepRC(ModelConfig(count_readout=True, enrichment=False))
    with torch.no_grad():  # a fresh model with the count read-out gives the paper's outputs
        assert torch.equal(fresh_paper(codes, lengths, bag_index, 4), fresh_counting(codes, lengths, bag_index, 4))

    # One witness-like sequence (the one the attention ranks first) among 999 or fifteen copies of it:
    # the paper's read-out sees nearly the same pooled embedding, the count read-out 15 times the evidence.
    paper = random_model(11, count_readout=False)
    counting = DeepRC(ModelConfig(count_readout=True, enrichment=False))
    counting.load_state_dict({**paper.state_dict(), "evidence_weight": torch.ones(1)})
    with torch.no_grad():
        order = torch.argsort(paper.attention_logits(paper.embed(codes, lengths)), descending=True)
    witness, background = order[:1], order[-985:]  # background: the sequences attended least
    one = torch.cat([witness, background[:998 - 984], background])[:999]
    fifteen = torch.cat([witness.repeat(15), background[:984]])
    bags = torch.zeros(999, dtype=torch.long)
    with torch.no_grad():
        paper_gap, counting_gap = (float(model(codes[fifteen], lengths[fifteen], bags, 1)[0, 0]
                                         - model(codes[one], lengths[one], bags, 1)[0, 0])
                                   for model in (paper, counting))
        logits = torch.zeros(999)
        logits[:15] = 20.0
        evidence_gap = DeepRC.attention_evidence(logits, bags, 1) - DeepRC.attention_evidence(logits[14:], bags[14:], 1)
    assert abs(float(evidence_gap) - np.log(15 * 985 / 999)) < 1e-3  # log(15 / 999) - log(1 / 985)
    assert counting_gap - paper_gap > 0.8 * np.log(15)


def test_evidence_without_its_gradient_gives_the_same_outputs_and_trains_only_its_weight():
    """The count read-out's default: the same outputs as with --evidence-gradient; the attention's gradient
    is what it would be with the evidence a constant (the pooled path alone), the weight's unchanged."""
    codes, lengths = random_batch(600, 13)
    bag_index, labels = torch.arange(600) % 3, torch.tensor([[1.0], [0.0], [1.0]])
    through = random_model(13, count_readout=True, evidence_gradient=True)
    detached = random_model(13, count_readout=True)

    def gradients(model, constant_evidence=False):
        model.zero_grad()
        if constant_evidence:  # the model's own pieces, the evidence computed without autograd
            embeddings = model.embed(codes, lengths)
            logits = model.attention_logits(embeddings)
            pooled = model.pool(embeddings, DeepRC.attention_weights(logits, bag_index, 3), bag_index, 3)
            outputs = model.read_out(pooled, DeepRC.attention_evidence(logits.detach(), bag_index, 3))
        else:
            outputs = model(codes, lengths, bag_index, 3)
        torch.nn.functional.binary_cross_entropy_with_logits(outputs, labels).backward()
        return outputs.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}

    outputs_through, grads_through = gradients(through)
    outputs_detached, grads_detached = gradients(detached)
    _, grads_constant = gradients(detached, constant_evidence=True)
    assert torch.equal(outputs_through, outputs_detached)
    assert torch.allclose(grads_detached["evidence_weight"], grads_through["evidence_weight"])
    for name in grads_detached:
        assert torch.allclose(grads_detached[name], grads_constant[name], rtol=1e-5, atol=1e-7), name
    attention_gap = relative_error(grads_detached["attention.4.weight"], grads_through["attention.4.weight"])
    assert attention_gap > 1e-3  # the evidence's gradient did reach the attention when not detached
