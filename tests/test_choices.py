"""One home for choices and names: the command line offers the library's tuples, settings rebuild
from their dicts, motif settings are checked in MotifsConfig, file names come from repclass.names."""
from __future__ import annotations

import click
import pytest

from repclass.cli import main
from repclass.config import EMBEDDINGS, SAMPLINGS, SELECTIONS, MotifsConfig, TrainConfig
from repclass.errors import UsageError


def _choices(command: str, option: str) -> tuple[str, ...]:
    param = next(p for p in main.commands[command].params if option in p.opts)
    assert isinstance(param.type, click.Choice)
    return tuple(param.type.choices)


def test_the_command_line_offers_the_librarys_choices():
    from repclass.baselines.burden import CLONOTYPES
    from repclass.comparison import METHODS
    from repclass.io.formats import CONVENTIONS
    from repclass.simulation.config import BACKGROUND_MODELS
    from repclass.simulation.vdj import MODELS

    assert _choices("train", "--method") == METHODS
    assert _choices("train", "--burden-clonotype") == CLONOTYPES
    assert (_choices("train", "--sampling"), _choices("train", "--selection"), _choices("train", "--embedding")) \
        == (SAMPLINGS, SELECTIONS, EMBEDDINGS)
    assert _choices("ingest", "--convention") == ("auto", *CONVENTIONS)
    assert _choices("simulate", "--background-model") == BACKGROUND_MODELS == tuple(MODELS)


def test_a_choice_outside_the_librarys_tuple_is_a_usage_error(tmp_path):
    from click.testing import CliRunner

    result = CliRunner().invoke(main, ["train", str(tmp_path), "--target", "status", "--out", str(tmp_path / "m"),
                                       "--method", "forest"])
    assert result.exit_code == 2 and "'forest' is not one of 'deeprc', 'kmer', 'burden'" in result.output


def test_train_config_rebuilds_from_its_dict():
    config = TrainConfig(seed=3, eval_every=7, enrichment_folds=4, sampling="count")
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()  # (enrichment_folds left out)
    with pytest.raises(UsageError, match="unknown training settings: colour"):
        TrainConfig.from_dict({**config.to_dict(), "colour": "red"})


@pytest.mark.parametrize("field, option", [("top_sequences", "--top-sequences"), ("n_motifs", "--motifs"),
                                           ("ig_steps", "--ig-steps"), ("chunk_size", "--chunk-size")])
def test_motif_settings_are_checked_in_their_config(field, option):
    with pytest.raises(UsageError, match=f"^{option} must be at least 1, got 0$"):
        MotifsConfig(**{field: 0})


def test_file_names_have_one_home():
    from repclass import names
    from repclass.baselines import common
    from repclass.io import store
    from repclass.model import checkpoint
    from repclass.prediction import ensemble

    assert checkpoint.MODEL_FILENAME is ensemble.MODEL_FILENAME is names.MODEL_FILENAME
    assert checkpoint.DESCRIPTION_FILENAME is common.DESCRIPTION_NAME is names.DESCRIPTION_NAME
    assert store.MANIFEST_NAME is names.MANIFEST_NAME
    values = [v for k, v in vars(names).items() if k.isupper()]
    assert len(values) == len(set(values))  # no two outputs share a name
