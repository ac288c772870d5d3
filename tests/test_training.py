"""repclass train: learning, outputs, every target type, splits, reproducibility, resume."""
import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from support.cohort import TINY_TRAIN
from repclass.model.checkpoint import load_model
from repclass.config import TrainConfig
from repclass.model.data import RepertoireCache
from repclass.errors import OutputExistsError, UsageError
from repclass.metrics import roc_auc
from repclass.model.scoring import score_repertoire
from repclass.training.splits import SplitSpec
from repclass.io.store import Store
from repclass.targets import TargetSpec
from repclass.training.loop import train


def test_tiny_cohort_motif_is_learned(tiny_model, tiny_cohort):
    # A motif in 5% of the positives' sequences, 16 repertoires, a few seconds of CPU.
    metrics = tiny_model.metrics
    assert metrics["validation"]["status"]["roc_auc"] >= 0.9
    assert metrics["test"]["status"]["roc_auc"] >= 0.9
    store_path, implanted = tiny_cohort
    model, _ = load_model(tiny_model.path)
    store = Store.open(store_path)
    cache = RepertoireCache(store)
    for sample_id, sequences in implanted.items():
        if not sequences:
            continue
        score = score_repertoire(model, cache.get(sample_id), torch.device("cpu"))
        junctions = store.read(sample_id)["junction_aa"].to_list()
        mass = sum(w for row, w in zip(score.rows, score.weights) if junctions[row] in sequences)
        assert mass > 0.5, f"{sample_id}: attention on implanted sequences {mass:.2f}"


def test_model_folder_contents(tiny_model):
    names = {p.name for p in tiny_model.path.iterdir()}
    assert {"model.safetensors", "model.json", "metrics.json", "metrics.tsv", "training_curve.tsv",
            "training_curve.png", "config.json", "predictions.tsv"} <= names
    metrics = json.loads((tiny_model.path / "metrics.json").read_text())
    for split in ("train", "validation", "test"):
        assert {"loss", "roc_auc", "balanced_accuracy", "f1"} <= set(metrics[split]["status"])
    curve = pl.read_csv(tiny_model.path / "training_curve.tsv", separator="\t")
    assert curve.columns == ["update", "train_loss", "validation_loss", "status:roc_auc"]
    # Evaluations after 10 and 20 updates, then every 50.
    updates = curve["update"].to_list()
    assert updates == [10, 20] + list(range(50, updates[-1] + 1, 50))
    assert metrics["updates"] == updates[-1]
    predictions = pl.read_csv(tiny_model.path / "predictions.tsv", separator="\t")
    assert predictions.height == 16 and set(predictions["split"]) == {"train", "validation", "test"}
    assert not (tiny_model.path.parent / "model.partial").exists()


def test_every_target_type_with_missing_labels(tmp_path):
    from support.cohort import make_cohort
    from repclass import ingest

    sheet, reps, _ = make_cohort(tmp_path, n_repertoires=12, n_sequences=200, extra_labels=True)
    store = ingest(sheet, tmp_path / "store", [reps])
    specs = [TargetSpec("status_partial"), TargetSpec("hla"), TargetSpec("age", kind="regression", weight=0.5)]
    result = train(store, tmp_path / "model", targets=specs, device="cpu",
                   config=TrainConfig(max_updates=20, eval_every=10, seed=1))
    _, info = load_model(result.path)
    assert [(t.column, t.kind) for t in info.targets] == [("status_partial", "binary"), ("hla", "multiclass"),
                                                         ("age", "regression")]
    assert info.model_config.n_outputs == 1 + 3 + 1
    test = result.metrics["test"]
    assert {"macro_auc", "accuracy"} <= set(test["hla"]) and {"r2", "mae", "mse", "pearson_r"} <= set(test["age"])
    predictions = pl.read_csv(result.path / "predictions.tsv", separator="\t")
    assert {"status_partial:p(+)", "hla:p(A)", "hla:predicted", "age:predicted", "age:label"} <= set(
        predictions.columns)
    # the repertoire without a status_partial label still trained the other targets
    assert result.metrics["train"]["status_partial"]["n"] + result.metrics["validation"]["status_partial"]["n"] + \
        result.metrics["test"]["status_partial"]["n"] == 11


def _train_small(store_path, out, **settings):
    config = TrainConfig(**{**TINY_TRAIN, "max_updates": 40, "eval_every": 20, **settings})
    return train(store_path, out, targets=["status"], config=config, device="cpu")


def test_same_seed_same_model(tiny_cohort, tmp_path):
    store_path, _ = tiny_cohort
    a = _train_small(store_path, tmp_path / "a")
    b = _train_small(store_path, tmp_path / "b")
    c = _train_small(store_path, tmp_path / "c", seed=5)
    weights_a, weights_b = load_file(a.path / "model.safetensors"), load_file(b.path / "model.safetensors")
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert (a.path / "model.safetensors").read_bytes() == (b.path / "model.safetensors").read_bytes()
    weights_c = load_file(c.path / "model.safetensors")
    assert not all(torch.equal(weights_a[k], weights_c[k]) for k in weights_a)


def test_kfold_writes_one_model_per_fold(tiny_cohort, tmp_path):
    store_path, _ = tiny_cohort
    result = train(store_path, tmp_path / "cv", targets=["status"], split=SplitSpec(folds=4), device="cpu",
                   config=TrainConfig(max_updates=10, eval_every=10))
    assert len(result.folds) == 4
    for fold in range(1, 5):
        assert (tmp_path / "cv" / f"fold_{fold}" / "model.safetensors").exists()
    summary = pl.read_csv(tmp_path / "cv" / "folds_summary.tsv", separator="\t")
    assert ["split", "target", "metric", "mean", "sd", "pooled", "pooled_low", "pooled_high", "permutation_p",
            "permutations"] == summary.columns
    # the pooled out-of-fold AUC is the AUC of out_of_fold_predictions.tsv, inside its interval
    pooled = pl.read_csv(tmp_path / "cv" / "out_of_fold_predictions.tsv", separator="\t")
    assert sorted(pooled["sample_id"].to_list()) == sorted(Store.open(store_path).sample_ids)
    auc = summary.filter((pl.col("split") == "test") & (pl.col("metric") == "roc_auc")).row(0, named=True)
    assert auc["pooled"] == pytest.approx(roc_auc(pooled["status:label"].to_numpy() == "+",
                                                  pooled["status:p(+)"].to_numpy()))
    assert auc["pooled_low"] <= auc["pooled"] <= auc["pooled_high"]
    assert "DeepRC" in (tmp_path / "cv" / "summary.md").read_text()
    tested = []
    for fold in range(1, 5):
        _, info = load_model(tmp_path / "cv" / f"fold_{fold}")
        tested += [i for i, s in info.splits.items() if s == "test"]
    assert sorted(tested) == sorted(Store.open(store_path).sample_ids)
    # one fold alone (a pipeline job per fold) is the same model as that fold of the full run
    single = train(store_path, tmp_path / "fold2", targets=["status"], split=SplitSpec(folds=4, fold=2),
                   device="cpu", config=TrainConfig(max_updates=10, eval_every=10))
    assert load_model(single.path)[1].splits == load_model(tmp_path / "cv" / "fold_2")[1].splits


def test_bad_requests(tiny_cohort, tmp_path):
    store_path, _ = tiny_cohort
    with pytest.raises(Exception, match="no label column 'nope'"):
        train(store_path, tmp_path / "m", targets=["nope"])
    _train_small(store_path, tmp_path / "m", max_updates=2, eval_every=1)
    with pytest.raises(OutputExistsError):
        _train_small(store_path, tmp_path / "m", max_updates=2)
    with pytest.raises(UsageError, match="--fold must be between 1 and 3"):
        train(store_path, tmp_path / "x", targets=["status"], split=SplitSpec(folds=3, fold=4))


def _weights(path):
    return load_file(path / "model.safetensors")


def test_resume_after_kill_gives_the_same_model(tiny_cohort, tmp_path):
    store_path, _ = tiny_cohort
    args = [sys.executable, "-m", "repclass", "train", str(store_path), "--target", "status", "--updates", "200",
            "--eval-every", "50", "--checkpoint-every", "20", "--patience", "100", "--threads", "1",
            "--device", "cpu"]
    subprocess.run(args + ["--out", str(tmp_path / "whole")], check=True, capture_output=True)
    interrupted = tmp_path / "interrupted"
    checkpoint = tmp_path / "interrupted.partial" / "checkpoint.pt"
    process = subprocess.Popen(args + ["--out", str(interrupted)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # well inside the run: a few more updates, maybe another checkpoint
    assert process.poll() is None, "the run ended before it could be interrupted"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not interrupted.exists()  # a killed run leaves nothing that looks finished
    state = torch.load(checkpoint, weights_only=True)["state"]
    assert 0 < state["update"] < 200
    subprocess.run(args + ["--out", str(interrupted), "--resume"], check=True, capture_output=True)
    whole, resumed = _weights(tmp_path / "whole"), _weights(interrupted)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert (tmp_path / "whole" / "metrics.json").read_text() == (interrupted / "metrics.json").read_text()


def test_training_stops_once_the_validation_split_is_solved(tiny_cohort, tmp_path):
    """At the first evaluation with validation AUC 1.0 and validation loss <= --stop-loss the run
    ends, long before its budget (the tiny cohort is solved, at loss 0.1, within about 100 updates)."""
    store_path, _ = tiny_cohort
    config = TrainConfig(**{**TINY_TRAIN, "stop_loss": 0.1})
    result = train(store_path, tmp_path / "model", targets=["status"], config=config, device="cpu")
    curve = pl.read_csv(result.path / "training_curve.tsv", separator="\t")
    solved = [auc == 1.0 and loss <= 0.1 for auc, loss in zip(curve["status:roc_auc"], curve["validation_loss"])]
    assert solved[-1] and not any(solved[:-1])
    assert result.metrics["updates"] == curve["update"][-1] < 300


def test_without_stop_loss_training_uses_its_whole_budget(tiny_cohort, tmp_path):
    """--stop-loss 0 (the paper's rule): a solved validation split does not end the run."""
    store_path, _ = tiny_cohort
    config = TrainConfig(**{**TINY_TRAIN, "max_updates": 150, "stop_loss": 0.0})
    result = train(store_path, tmp_path / "model", targets=["status"], config=config, device="cpu")
    curve = pl.read_csv(result.path / "training_curve.tsv", separator="\t")
    assert curve["update"].to_list() == [10, 20, 50, 100, 150]


def test_labels_without_a_clear_kmer_seed_the_best_one_or_with_no_fallback_the_papers_start(tmp_path, caplog):
    # With labels that no k-mer beats chance on, only the best k-mer is seeded (kernel 0; the
    # other kernels keep the paper's random start). Without the fallback nothing is seeded and the
    # attention gets no head start: the model is the one --init-kmers 0 --init-attention 0 trains,
    # weight for weight (the model files' metadata records the settings, so their bytes differ).
    from support.cohort import make_cohort
    from repclass import ingest

    sheet, reps, _ = make_cohort(tmp_path, n_repertoires=16, n_sequences=300, extra_labels=True)
    store = ingest(sheet, tmp_path / "store", [reps])
    settings = dict(max_updates=20, eval_every=10, seed=0)
    target = [TargetSpec("age", kind="regression")]
    with caplog.at_level("INFO", logger="repclass"):
        best = train(store, tmp_path / "best", targets=target, device="cpu", config=TrainConfig(**settings))
    assert "seeded 1 kernels from the best k-mer (no clear candidate)" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="repclass"):
        none = train(store, tmp_path / "none", targets=target, device="cpu",
                     config=TrainConfig(**settings, init_kmer_fallback=False))
    assert "seeded 0 kernels from the clear candidates" in caplog.text
    paper = train(store, tmp_path / "paper", targets=target, device="cpu",
                  config=TrainConfig(**settings, init_kmers=0, init_attention=0))
    none_weights = load_file(none.path / "model.safetensors")
    paper_weights = load_file(paper.path / "model.safetensors")
    assert none_weights.keys() == paper_weights.keys()
    assert all(torch.equal(none_weights[name], paper_weights[name]) for name in paper_weights)
    best_weights = load_file(best.path / "model.safetensors")
    assert not torch.equal(best_weights["conv_weight"], paper_weights["conv_weight"])


def test_count_readout_is_the_default_from_the_cli_and_the_papers_read_out_an_option(tiny_cohort, tmp_path):
    """`repclass train` has the count read-out by default: the model file records it, the model learns
    the tiny cohort's motif, and predict scores with it (its evidence weight has moved from its start
    at 0). `--no-count-readout` trains the paper's read-out, with no evidence weight at all."""
    from click.testing import CliRunner

    from repclass.cli import main

    store_path, _ = tiny_cohort
    runner = CliRunner()
    trained = runner.invoke(main, ["train", str(store_path), "--target", "status", "--out", str(tmp_path / "m"),
                                   "--updates", "100", "--eval-every", "50", "--device", "cpu"])
    assert trained.exit_code == 0, trained.output
    model, info = load_model(tmp_path / "m")
    assert info.model_config.count_readout and float(model.evidence_weight.detach().abs().max()) > 0
    assert info.metrics["validation"]["status"]["roc_auc"] == 1.0
    predicted = runner.invoke(main, ["predict", str(tmp_path / "m"), str(store_path), "--out", str(tmp_path / "p.tsv"),
                                     "--device", "cpu"])
    assert predicted.exit_code == 0, predicted.output

    paper = runner.invoke(main, ["train", str(store_path), "--target", "status", "--out", str(tmp_path / "paper"),
                                 "--no-count-readout", "--updates", "10", "--device", "cpu"])
    assert paper.exit_code == 0, paper.output
    paper_model, paper_info = load_model(tmp_path / "paper")
    assert not paper_info.model_config.count_readout and not hasattr(paper_model, "evidence_weight")


def _clonal_cohort(folder, n_repertoires: int = 40, n_sequences: int = 200, seed: int = 3):
    """No motif: positives hold expanded clones (mean count about 5), negatives few (about 1.25)."""
    import numpy as np
    from support.cohort import background_pool, write_airr, write_table

    rng = np.random.default_rng(seed)
    pool = background_pool()
    (folder / "reps").mkdir(parents=True)
    rows = []
    for index, label in enumerate(["+", "-"] * (n_repertoires // 2), start=1):
        sample_id = f"c{index:02d}"
        chosen = [pool[i] for i in rng.choice(len(pool), n_sequences, replace=False)]
        counts = rng.geometric(0.2 if label == "+" else 0.8, n_sequences)
        write_airr(folder / "reps" / f"{sample_id}.tsv", [[f"{sample_id}_{i}", s, "TRBV5-1*01", "TRBJ2-7*01", int(c),
                                                          "T", "TRB"] for i, (s, c) in enumerate(zip(chosen, counts))])
        rows.append([sample_id, label])
    return write_table(folder / "samples.tsv", ["sample_id", "status"], rows), folder / "reps"


def test_count_readout_with_a_fitted_start_reads_clonal_expansion(tmp_path, caplog):
    """--use-counts --count-readout --init-evidence: the weight on the attention evidence starts at its
    fit to the training labels, so a label carried by clone sizes alone (no shared sequence) is read
    from the first update; with the start at 0 the weight has barely moved by then. (No k-mer seeds:
    a seeded k-mer's attention head start would make its matches, not clone sizes, the evidence.)"""
    from repclass import ingest
    from repclass.config import ModelConfig

    sheet, reps = _clonal_cohort(tmp_path)
    store = ingest(sheet, tmp_path / "store", [reps])
    settings = dict(max_updates=1, eval_every=1, seed=0, stop_loss=0, init_kmers=0)
    model_config = ModelConfig(use_counts=True, count_readout=True)
    with caplog.at_level("INFO", logger="repclass"):
        fitted = train(store, tmp_path / "fitted", targets=["status"], device="cpu", model_config=model_config,
                       config=TrainConfig(**settings, init_evidence=True))
    assert "weight starts at its fit to the training labels (status +" in caplog.text
    assert fitted.metrics["test"]["status"]["roc_auc"] == 1.0
    assert fitted.metrics["validation"]["status"]["roc_auc"] == 1.0
    unfitted = train(store, tmp_path / "unfitted", targets=["status"], device="cpu", model_config=model_config,
                     config=TrainConfig(**settings))
    fitted_weight = float(load_model(fitted.path)[0].evidence_weight.detach()[0])
    assert fitted_weight > 0.5 and abs(float(load_model(unfitted.path)[0].evidence_weight.detach()[0])) < 0.05


def test_a_model_that_only_memorises_is_flagged_and_the_advice_reads_the_label(tmp_path, caplog):
    """A label carried by clone sizes alone is invisible to the defaults (no counts): the validation
    loss is best at the first evaluation while the training repertoires are memorised, and the run
    says so in one warning, as does `repclass motifs`' report. Its advice (--use-counts
    --init-evidence --init-kmers 0) reads the label, and that run is not flagged."""
    from click.testing import CliRunner

    from repclass import ingest
    from repclass.cli import main
    from repclass.config import ModelConfig

    sheet, reps = _clonal_cohort(tmp_path)
    store = ingest(sheet, tmp_path / "store", [reps])
    settings = dict(seed=0, eval_every=20, max_updates=400)
    with caplog.at_level("INFO", logger="repclass"):
        blind = train(store, tmp_path / "blind", targets=["status"], device="cpu", config=TrainConfig(**settings))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert blind.best_update <= 20 and blind.metrics["updates"] > 100
    assert len(warnings) == 1 and warnings[0].startswith(f"the validation loss was lowest at update "
                                                         f"{blind.best_update}, near the start")
    assert "--use-counts --init-evidence --init-kmers 0" in warnings[0]
    # repclass motifs reads the same warning off the model folder, into its report and motifs.json
    explained = CliRunner().invoke(main, ["motifs", str(blind.path), str(store.path), "--out", str(tmp_path / "motifs"),
                                          "--top-sequences", "50", "--motifs", "1", "--ig-steps", "8", "--device",
                                          "cpu"])
    assert explained.exit_code == 0, explained.output
    evidence = json.loads((tmp_path / "motifs" / "motifs.json").read_text())["evidence"]
    assert evidence["training_warnings"] == [{"fold": None, "warning": warnings[0]}]
    assert '<p class="warn">Training: the validation loss was lowest at update' in (
        tmp_path / "motifs" / "report.html").read_text()

    caplog.clear()
    with caplog.at_level("INFO", logger="repclass"):
        reading = train(store, tmp_path / "reading", targets=["status"], device="cpu",
                        model_config=ModelConfig(use_counts=True),
                        config=TrainConfig(**settings, init_evidence=True, init_kmers=0))
    assert reading.metrics["validation"]["status"]["roc_auc"] == 1.0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.parametrize("reads_clone_sizes", [False, True])
def test_the_memorisation_warning_needs_an_early_unsolved_best_and_a_falling_training_loss(reads_clone_sizes):
    """The rule behind the warning, evaluation by evaluation: an early best that later evaluations
    never beat, with the training loss below a quarter of it; not when the early best solved the
    validation split, not when the best came later. Its clone-size advice is left out when the run
    already reads clone sizes."""
    from repclass.config import ModelConfig
    from repclass.model.deeprc import DeepRC
    from repclass.targets import Target
    from repclass.training.loop import TrainingTracker

    def tracker_after(evaluations, eval_every=100):
        tracker = TrainingTracker(DeepRC(ModelConfig(use_counts=reads_clone_sizes)),
                           TrainConfig(eval_every=eval_every, init_evidence=reads_clone_sizes),
                           [Target("status", "binary", classes=["-", "+"])], validated=True)
        for update, train_loss, validation_loss, auc in evaluations:
            tracker.trained(update, train_loss)
            tracker.evaluated({"loss": validation_loss, "status": {"roc_auc": auc}})
        return tracker

    memorising = [(10, 0.6, 0.70, 0.6), (20, 0.5, 0.72, 0.6), (100, 0.2, 0.9, 0.5), (200, 0.1, 1.3, 0.5)]
    warning = tracker_after(memorising).memorised()
    assert warning is not None and "lowest at update 10, near the start (status:roc_auc 0.60 there)" in warning
    assert ("--use-counts --init-evidence" in warning) is not reads_clone_sizes
    assert tracker_after(memorising[:3]).memorised() is None  # training loss 0.2: not yet below 0.70 / 4
    solved = [(10, 0.1, 0.015, 1.0), (20, 0.001, 0.016, 1.0)]
    assert tracker_after(solved).memorised() is None
    later = [(10, 0.6, 0.9, 0.5), (200, 0.3, 0.5, 0.8), (300, 0.01, 0.9, 0.7)]
    assert tracker_after(later).memorised() is None
    assert tracker_after(later, eval_every=200).memorised() is not None  # 200 is within --eval-every there


def test_init_evidence_without_the_count_readout_is_refused_before_any_work(tiny_cohort, tmp_path):
    from click.testing import CliRunner

    from repclass.cli import main

    store_path, _ = tiny_cohort
    result = CliRunner().invoke(main, ["train", str(store_path), "--target", "status", "--out", str(tmp_path / "m"),
                                       "--init-evidence", "--no-count-readout", "--device", "cpu"])
    assert result.exit_code != 0
    assert "--init-evidence starts the count read-out's weight: drop --no-count-readout" in result.output
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.partial").exists()


def test_bag_share_subsamples_repertoires_smaller_than_the_bag(tiny_cohort):
    """--bag-share below 1: each update samples that share of a repertoire smaller than the bag (a
    different subset at each update); at 1 (the default) such a repertoire is used whole, as
    before; the bag's own limit still holds; the CLI takes it, config.json keeps the default out."""
    import numpy as np

    from repclass.training.batching import bag_size, update_batches
    from repclass.training.distributed import Context

    store_path, _ = tiny_cohort
    store = Store.open(store_path)
    cache = RepertoireCache(store)
    ids = store.sample_ids[:4]
    sizes = {i: len(cache.get(i)) for i in ids}

    def sampled(config: TrainConfig) -> list[dict[str, int]]:
        return [dict(zip(chosen, np.bincount(batch.bag_index.numpy(), minlength=len(chosen)).tolist()))
                for _, chosen, batch in update_batches(cache, ids, config, 0, False, Context())]

    whole = sampled(TrainConfig(max_updates=2, batch_size=4, seed=0))
    assert all(counts == sizes for counts in whole)
    half = sampled(TrainConfig(max_updates=2, batch_size=4, seed=0, bag_share=0.5))
    assert all(counts == {i: -(-sizes[i] // 2) for i in ids} for counts in half)
    batches = list(update_batches(cache, ids[:1], TrainConfig(max_updates=2, batch_size=1, seed=0, bag_share=0.5), 0,
                                  False, Context()))
    assert not torch.equal(batches[0][2].codes, batches[1][2].codes)  # another half at the next update
    assert bag_size(100_000, TrainConfig(bag_share=0.5)) == 10_000 and bag_size(3, TrainConfig(bag_share=0.1)) == 1
    assert "bag_share" not in TrainConfig().to_dict() and TrainConfig(bag_share=0.5).to_dict()["bag_share"] == 0.5
    with pytest.raises(UsageError, match="bag"):
        TrainConfig(bag_share=0.0)
