import math

import numpy as np
import pytest
import torch

from repclass.errors import UsageError
from repclass.metrics import balanced_accuracy, f1_score, macro_auc, regression_metrics, roc_auc
from repclass.targets import assign_offsets, infer_target


@pytest.mark.parametrize("labels, positive", [
    (["+", "-", "+"], "+"), (["True", "False"], "True"), (["false", "true"], "true"), (["1", "0", "0"], "1"),
    (["yes", "no"], "yes"), (["negative", "positive"], "positive"), (["case", "control"], "case"),
])
def test_binary_positive_class_is_inferred(labels, positive):
    target = infer_target("y", labels)
    assert target.kind == "binary" and target.positive == positive


def test_binary_needs_a_named_positive_for_other_labels():
    with pytest.raises(UsageError, match="--positive y=CMV"):
        infer_target("y", ["CMV", "EBV"])
    assert infer_target("y", ["CMV", "EBV"], positive="ebv").positive == "EBV"


def test_kinds_are_inferred():
    assert infer_target("age", ["31", "45", "52", None]).kind == "regression"
    assert infer_target("hla", ["A", "B", "C"]).kind == "multiclass"
    assert infer_target("hla", ["A", "B", "C"]).classes == ["A", "B", "C"]
    assert infer_target("n", ["1", "2", "3"], kind="multiclass").kind == "multiclass"
    with pytest.raises(UsageError, match="regression needs numbers"):
        infer_target("hla", ["A", "B", "C"], kind="regression")
    with pytest.raises(UsageError, match="no repertoire has a label"):
        infer_target("x", [None, None])


def test_pos_weight_balances_classes():
    target = infer_target("y", ["+", "-", "-", "-"])
    assert target.pos_weight == 3.0


def test_missing_labels_are_skipped_in_the_loss():
    target = infer_target("y", ["+", "-"])
    outputs = torch.tensor([[10.0], [-10.0], [123.0]])
    values, present = target.encode(["+", "-", None])
    loss = target.loss(outputs, torch.from_numpy(values), torch.from_numpy(present))
    assert float(loss) < 1e-3  # the third (unlabelled, wildly wrong) output does not count


def test_offsets_and_predictions_for_several_targets():
    targets = [infer_target("y", ["+", "-"]), infer_target("hla", ["A", "B", "C"]),
               infer_target("age", ["20", "40", "60"])]
    assert assign_offsets(targets) == 5
    outputs = np.array([[0.0, 5.0, 0.0, 0.0, 1.0]])
    columns = {}
    for target in targets:
        columns.update(target.predictions(outputs))
    assert columns["y:p(+)"][0] == pytest.approx(0.5)
    assert columns["hla:predicted"][0] == "A"
    assert columns["age:predicted"][0] == pytest.approx(40 + np.std([20, 40, 60]))


def test_roc_auc_with_ties():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert math.isnan(roc_auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_classification_metrics():
    assert balanced_accuracy(np.array([1, 1, 1, 0]), np.array([1, 0, 1, 0])) == pytest.approx((2 / 3 + 1) / 2)
    assert f1_score(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == pytest.approx(0.5)
    probabilities = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    assert macro_auc(np.array([0, 1, 2]), probabilities) == pytest.approx(1.0)


def test_regression_metrics():
    result = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert result["mae"] == pytest.approx(1 / 3)
    assert result["mse"] == pytest.approx(1 / 3)
    assert result["r2"] == pytest.approx(1 - (1 / 3) / np.var([1, 2, 3]))
    assert result["pearson_r"] == pytest.approx(np.corrcoef([1, 2, 3], [1, 2, 4])[0, 1])
