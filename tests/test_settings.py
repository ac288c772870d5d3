"""One home for each setting (issue 14): defaults live in the library's dataclasses and the CLI
takes them from there; settings are checked in the library, in the command line's words, so that
Python callers get the same refusals (UsageError, exit 2 on the command line)."""
import dataclasses
import inspect
import re

import click
import pytest
from click.testing import CliRunner

from repclass import cli
from repclass.config import CHUNK_SIZE, ModelConfig, TrainConfig, option_name
from repclass.errors import InputFileError, UsageError
from repclass.io.formats import OVERRIDE_OPTIONS, ColumnOverrides, sniff
from repclass.training.splits import SplitSpec, split_ids
from repclass.targets import TargetSpec, target_specs


def _defaults(command: click.Command) -> dict[str, object]:
    context = click.Context(command)
    return {p.name: p.get_default(context) for p in command.params if isinstance(p, click.Option)}


def _options(command: click.Command) -> set[str]:
    return {name for p in command.params for name in p.opts + p.secondary_opts}


@pytest.mark.parametrize("config", [TrainConfig, ModelConfig])
def test_train_options_take_their_names_and_defaults_from_config(config):
    defaults = _defaults(cli.train)
    for field in dataclasses.fields(config):
        flag = option_name(field.name)
        if not flag.startswith("--"):  # no option (n_outputs, adam_eps, extra)
            continue
        assert flag in _options(cli.train), f"{config.__name__}.{field.name}: no option {flag}"
        assert defaults[field.name] == getattr(config(), field.name), field.name


@pytest.mark.parametrize("command, where, names", [
    ("ingest", "repclass.io.reader:ReadOptions", {"convention": "convention", "anchor_check": "anchor_check",
                                                "productive_only": "productive_only", "locus": "locus",
                                                "cells_only": "cells_only",
                                                "high_confidence_only": "high_confidence_only"}),
    ("train", "repclass.baselines.kmer:KmerConfig", {"kmer_size": "k", "kmer_gap": "gap",
                                                      "kmer_counts": "count_weighted", "inner_folds": "inner_folds"}),
    ("train", "repclass.baselines.burden:BurdenConfig", {"burden_clonotype": "clonotype",
                                                          "inner_folds": "inner_folds"}),
    ("simulate", "repclass.simulation.run:SimulationConfig", {
        "n_repertoires": "n_repertoires", "n_positive": "n_positive", "positive_fraction": "positive_fraction",
        "witness_rate": "witness_rate", "random_motifs": "random_motifs", "gap_probability": "gap_probability",
        "substitution_probability": "substitution_probability", "noise_rate": "noise_rate",
        "purge_background": "purge_background", "background_model": "background_model", "zipf_a": "zipf_a",
        "max_count": "max_count", "seed": "seed"}),
])
def test_other_defaults_come_from_the_library_dataclasses(command, where, names):
    import importlib

    module, _, name = where.partition(":")
    instance = getattr(importlib.import_module(module), name)()
    defaults = _defaults(cli.main.commands[command])
    for option, field in names.items():
        assert defaults[option] == getattr(instance, field), option


def test_simulate_ranges_and_chunk_size_defaults():
    from repclass.prediction.run import predict
    from repclass.simulation.run import SimulationConfig

    config = SimulationConfig()
    defaults = _defaults(cli.simulate)
    assert cli._int_range(defaults["sequences"], "--sequences") == (config.min_sequences, config.max_sequences)
    assert cli._int_range(defaults["motif_length"], "--motif-length") == config.random_motif_length
    assert TrainConfig().chunk_size == CHUNK_SIZE == inspect.signature(predict).parameters["chunk_size"].default
    from repclass.model.deeprc import DeepRC
    from repclass.model.scoring import score_repertoire

    for function in (score_repertoire, DeepRC.embed, DeepRC.forward):
        assert inspect.signature(function).parameters["chunk_size"].default == CHUNK_SIZE, function.__name__
    for name in ("train", "predict", "motifs"):
        assert _defaults(cli.main.commands[name])["chunk_size"] == CHUNK_SIZE


def test_motifs_options_take_their_defaults_from_the_library():
    from repclass.explain import motifs

    parameters = inspect.signature(motifs).parameters
    defaults = _defaults(cli.motifs)
    for name in ("top_sequences", "n_motifs", "ig_steps", "seed", "chunk_size", "device", "include_training",
                 "target", "class_name", "truth"):
        assert defaults[name] == parameters[name].default, name


@pytest.mark.parametrize("make, message", [
    (lambda: TrainConfig(learning_rate=-1), "--lr must be a positive number, got -1"),
    (lambda: TrainConfig(learning_rate=float("nan")), "--lr must be a positive number, got nan"),
    (lambda: TrainConfig(max_updates=0), "--updates must be at least 1, got 0"),
    (lambda: TrainConfig(chunk_size=0), "--chunk-size must be at least 1, got 0"),
    (lambda: TrainConfig(min_delta=float("nan")), "--min-delta must be zero or a positive number, got nan"),
    (lambda: TrainConfig(selection="best"), "--selection must be 'sample' or 'top', got 'best'"),
    (lambda: TrainConfig(validation_fraction=0.5, test_fraction=0.5), "leave no repertoires for training"),
    (lambda: TrainConfig(init_kmer_max_length=6), "--init-kmer-max-length must be from 1 to 5, got 6"),
    (lambda: TrainConfig(init_kmer_length=5, init_kmer_max_length=4), "--init-kmer-max-length 4 is below "
                                                                         "--init-kmer-length 5"),
    (lambda: ModelConfig(n_kernels=0), "--kernels must be at least 1, got 0"),
    (lambda: ModelConfig(reduction_fraction=0), "--reduction-fraction must be above 0 and at most 1, got 0"),
    (lambda: SplitSpec(fold=2), "--fold needs --folds"),
    (lambda: SplitSpec(folds=3, fold=4), "--fold must be between 1 and 3, got 4"),
    (lambda: split_ids({"r1": "validation", "r2": "test"}), "no repertoires left for training"),
    (lambda: target_specs(["status"], kinds={"stauts": "binary"}), "--type names stauts, which is not a --target"),
    (lambda: target_specs(["status"], positives={"age": "+"}), "--positive names age, which is not a --target"),
    (lambda: target_specs(["status"], weights={"x": 2.0}), "--loss-weight names x, which is not a --target"),
    (lambda: target_specs([TargetSpec("status", weight=-1.0)]), "--loss-weight status=-1.0"),
    (lambda: target_specs(["status"], weights={"status": 0.0}), "every --loss-weight is 0"),
])
def test_python_callers_get_usage_errors_in_the_users_words(make, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        make()


def test_target_specs_fill_in_named_columns():
    specs = target_specs(["status", TargetSpec("age", kind="regression")], kinds={"status": "binary"},
                         positives={"status": "+"}, weights={"age": 0.5})
    assert specs == [TargetSpec("status", "binary", "+", 1.0), TargetSpec("age", "regression", None, 0.5)]


@pytest.mark.parametrize("args, message", [
    (["--fold", "2"], "--fold needs --folds"),
    (["--type", "stauts=binary"], "--type names stauts, which is not a --target"),
    (["--kernels", "0"], "--kernels must be at least 1, got 0"),
])
def test_the_cli_turns_library_refusals_into_exit_2(tmp_path, args, message):
    result = CliRunner().invoke(cli.main, ["train", str(tmp_path / "no.store"), "--target", "status", "--out",
                                           str(tmp_path / "m"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize("canonical", sorted(OVERRIDE_OPTIONS))
def test_a_missing_override_column_names_a_real_ingest_option(tmp_path, canonical):
    path = tmp_path / "r.tsv"
    path.write_text("junction_aa\tduplicate_count\tv_call\tj_call\tproductive\nCASSLGQETQYF\t1\tTRBV1\tTRBJ1\tT\n")
    with pytest.raises(InputFileError) as error:
        sniff(path, ColumnOverrides(**{canonical: "nope"}))
    named = re.findall(r"--[a-z][a-z-]*", str(error.value))
    assert named == [OVERRIDE_OPTIONS[canonical]]
    assert set(named) <= _options(cli.ingest)


def test_override_options_are_the_ingest_options():
    assert set(OVERRIDE_OPTIONS.values()) <= _options(cli.ingest)
    assert set(OVERRIDE_OPTIONS) <= {f.name for f in dataclasses.fields(ColumnOverrides)}
