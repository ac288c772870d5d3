"""repclass.training.splits: seeded stratified splits, k folds, a sheet column's split."""

import pytest

from repclass.config import TrainConfig
from repclass.errors import UsageError
from repclass.training.loop import train
from repclass.training.splits import SplitSpec, column_split, kfold_splits, random_split, split_ids


def test_random_split_is_stratified_and_seeded():
    ids = [f"s{i}" for i in range(40)]
    strata = ["+"] * 20 + ["-"] * 20
    split = random_split(ids, strata, 0.2, 0.2, seed=1)
    assert split == random_split(ids, strata, 0.2, 0.2, seed=1)
    assert split != random_split(ids, strata, 0.2, 0.2, seed=2)
    for name, expected in (("train", 12), ("validation", 4), ("test", 4)):
        members = [i for i, s in split.items() if s == name]
        assert sum(strata[ids.index(m)] == "+" for m in members) == expected


def test_kfold_tests_each_repertoire_once():
    ids = [f"s{i}" for i in range(25)]
    strata = ["+", "-"] * 12 + ["+"]
    folds = kfold_splits(ids, strata, 5, seed=0)
    tested = [i for fold in folds for i, s in fold.items() if s == "test"]
    assert sorted(tested) == sorted(ids)
    for fold in folds:
        assert {"train", "validation", "test"} == set(fold.values())
    with pytest.raises(UsageError, match="at least 3 folds"):
        kfold_splits(ids, strata, 2, seed=0)


def test_column_split_spellings():
    assert column_split(["a", "b", "c"], ["Train", "val", "TEST"], "split") == {"a": "train", "b": "validation",
                                                                                "c": "test"}
    with pytest.raises(UsageError, match="'holdout' for sample 'a'"):
        column_split(["a"], ["holdout"], "split")


def test_split_ids_turn_an_assignment_around():
    assert split_ids({"b": "train", "c": "test", "a": "train"}) == {"train": ["a", "b"], "validation": [],
                                                                    "test": ["c"]}


def test_split_column(tmp_path):
    from support.cohort import make_cohort
    from repclass import ingest

    sheet, reps, _ = make_cohort(tmp_path, n_repertoires=8, n_sequences=100)
    lines = sheet.read_text().splitlines()
    splits = ["train"] * 4 + ["validation"] * 2 + ["test"] * 2
    sheet.write_text("\n".join([lines[0] + "\tsplit"] + [f"{l}\t{s}" for l, s in zip(lines[1:], splits)]) + "\n")
    store = ingest(sheet, tmp_path / "store", [reps])
    result = train(store, tmp_path / "m", targets=["status"], split=SplitSpec(column="split"), device="cpu",
                   config=TrainConfig(max_updates=5, eval_every=5))
    assert (result.metrics["train"]["n"], result.metrics["validation"]["n"], result.metrics["test"]["n"]) == (4, 2, 2)
