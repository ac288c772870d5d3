"""What predict and motifs are given, resolved by one function (repclass.prediction.inputs): the same
refusals in the same words, each model file loaded once, and the training warning train recorded."""
from __future__ import annotations

import json
import shutil

import pytest

from repclass.errors import UsageError
from repclass.explain.run import motifs
from repclass.explain.summary import training_warning
from repclass.explain.writing import training_history
from repclass.model.checkpoint import read_info
from repclass.names import DIAGNOSTICS_NAME
from repclass.prediction.inputs import resolve_inputs
from repclass.prediction.run import predict


def _bad_inputs(tmp_path, store_path):
    folder = tmp_path / "not_a_store"
    folder.mkdir()
    one, other = tmp_path / "a" / "s1.tsv", tmp_path / "b" / "s1.tsv.gz"
    for path in (one, other):
        path.parent.mkdir()
        path.write_text("junction_aa\nCASSLGQETQYF\n")
    return [([folder], "a folder but not a store"),
            ([store_path, one], "a store, given together with other inputs"),
            ([one, other], "give the same sample id 's1'")]


def test_predict_and_motifs_refuse_the_same_inputs_in_the_same_words(tiny_model, tiny_cohort, tmp_path):
    store_path, _ = tiny_cohort
    for k, (inputs, message) in enumerate(_bad_inputs(tmp_path, store_path)):
        with pytest.raises(UsageError, match=message) as resolved:
            resolve_inputs(inputs)
        with pytest.raises(UsageError) as predicted:
            predict(tiny_model.path, inputs, tmp_path / f"p{k}.tsv")
        with pytest.raises(UsageError) as explained:
            motifs(tiny_model.path, inputs, tmp_path / f"m{k}")
        assert str(predicted.value) == str(explained.value) == str(resolved.value)
    assert not list(tmp_path.glob("p*.tsv")) and not list(tmp_path.glob("m*"))


def test_motifs_loads_each_model_file_once(tiny_model, tiny_cohort, tmp_path, monkeypatch):
    import repclass.explain.run as explain_run
    import repclass.model.checkpoint as checkpoint

    store_path, _ = tiny_cohort
    loads = []
    load = checkpoint.load_model

    def counted(path, device="cpu"):
        loads.append(path)
        return load(path, device)

    handed = []
    monkeypatch.setattr(checkpoint, "load_model", counted)
    # the passes after the inputs are resolved get the loaded model (and load nothing themselves)
    monkeypatch.setattr(explain_run, "_motifs", lambda model, models, store, *rest, **settings: handed.append(
        (models, store)))
    motifs(tiny_model.path, store_path, tmp_path / "m", device="cpu")
    (models, store), = handed
    assert len(loads) == 1 and models.paths == [tiny_model.path / "model.safetensors"] and not models.folds
    assert models.loaded[0][1].targets[0].column == "status" and store.path == store_path


def test_train_records_its_warning_and_motifs_reads_it(tiny_model, tmp_path):
    recorded = json.loads((tiny_model.path / DIAGNOSTICS_NAME).read_text())
    assert set(recorded) == {"training_warning"}
    model_file = tiny_model.path / "model.safetensors"
    info, history = read_info(model_file), training_history(model_file)
    assert training_warning(model_file, info, history) == recorded["training_warning"]
    # motifs takes what train recorded, without reading the curve again ...
    copy = tmp_path / "model"
    shutil.copytree(tiny_model.path, copy)
    (copy / DIAGNOSTICS_NAME).write_text(json.dumps({"training_warning": "it memorised"}))
    assert training_warning(copy / "model.safetensors", info, history) == "it memorised"
    # ... and a model folder without the record gets the warning made again from its curve
    (copy / DIAGNOSTICS_NAME).unlink()
    assert training_warning(copy / "model.safetensors", info, history) == recorded["training_warning"]
