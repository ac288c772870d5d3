"""repclass.model.checkpoint: model files are checked before use, carry what a model needs, and
older files still load."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from repclass.config import ModelConfig
from repclass.errors import ModelFileError
from repclass.model.checkpoint import load_model, read_info


def _rewrite(model_dir, tmp_path, change_metadata=None, change_tensors=None):
    source = model_dir / "model.safetensors"
    from safetensors import safe_open
    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(source))
    data = json.loads(metadata["repclass"])
    if change_metadata:
        change_metadata(data)
    if change_tensors:
        change_tensors(tensors)
    target = tmp_path / "bad.safetensors"
    save_file(tensors, str(target), metadata={"repclass": json.dumps(data)})
    return target


def test_model_file_refusals(tiny_model, tmp_path):
    def version(data):
        data["format_version"] = 7

    with pytest.raises(ModelFileError, match="format version 7 is not supported"):
        load_model(_rewrite(tiny_model.path, tmp_path, change_metadata=version))

    def drop_and_add(tensors):
        del tensors["conv_bias"]
        tensors["extra.weight"] = torch.zeros(2)

    with pytest.raises(ModelFileError, match="missing weights: conv_bias; unexpected weights: extra.weight"):
        load_model(_rewrite(tiny_model.path, tmp_path, change_tensors=drop_and_add))

    def reshape(tensors):
        tensors["conv_bias"] = torch.zeros(5)

    with pytest.raises(ModelFileError, match=r"conv_bias \(5,\) \(expected \(32,\)\)"):
        load_model(_rewrite(tiny_model.path, tmp_path, change_tensors=reshape))
    not_a_model = tmp_path / "junk.safetensors"
    not_a_model.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelFileError, match="not a safetensors model file"):
        load_model(not_a_model)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "absent")


def test_model_info_is_complete(tiny_model):
    info = read_info(tiny_model.path)
    assert info.targets[0].classes == ["-", "+"] and info.targets[0].positive == "+"
    assert info.junction_convention == "junction" and len(info.store_fingerprint) == 64
    assert info.torch_version == torch.__version__ and set(info.splits.values()) == {"train", "validation", "test"}
    assert info.read_options["productive_only"] is True


def test_model_files_from_before_the_count_readout_load_without_it():
    old = ModelConfig().to_dict()
    del old["count_readout"]
    assert ModelConfig.from_dict(old).count_readout is False
    assert ModelConfig.from_dict({**old, "count_readout": True}).count_readout is True
    del old["evidence_gradient"]  # files from before the option trained with the gradient
    assert ModelConfig.from_dict(old).evidence_gradient is True and not ModelConfig().evidence_gradient
