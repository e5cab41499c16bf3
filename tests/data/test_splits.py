import logging
from collections import Counter, defaultdict

import pytest

from breakhis_lit.data.naming import parse_path
from breakhis_lit.data.splits import (
    SplitRow,
    assign_splits,
    check_split,
    data_fingerprint,
    group_key,
    kfold_groups,
    make_split,
    mark_skipped,
    read_split_csv,
    split_hash,
    write_split_csv,
)
from breakhis_lit.errors import BreakHisError


@pytest.fixture(scope="module")
def images(breakhis_files):
    return [parse_path(r["path"]) for r in breakhis_files]


def _sides(rows, key=lambda r: r.group):
    sides = defaultdict(set)
    for r in rows:
        sides[key(r)].add(r.split)
    return sides


@pytest.mark.parametrize("group_by", ["accession", "patient_id", "folder"])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_patient_split_properties(images, group_by, seed):
    n_groups = {"accession": 70, "patient_id": 81, "folder": 82}[group_by]
    assert len({group_key(im, group_by) for im in images}) == n_groups
    for mag in (40, 100, 200, 400):
        rows = make_split(images, "patient", magnification=mag, group_by=group_by, seed=seed)
        assert {r.magnification for r in rows} == {mag}
        assert all(len(s) == 1 for s in _sides(rows).values())
        counts = Counter(r.split for r in rows)
        for name, ratio in (("train", 0.6), ("val", 0.1), ("test", 0.3)):
            assert abs(counts[name] / len(rows) - ratio) < 0.04, (mag, counts)
            assert {r.label for r in rows if r.split == name} == {"benign", "malignant"}


def test_patient_split_same_group_same_split_at_every_magnification(images):
    split_of = {}
    for mag in ("40X", 100, "200", 400):
        for r in make_split(images, "patient", magnification=mag, seed=3):
            assert split_of.setdefault(r.group, r.split) == r.split
    assert len(split_of) == 70


def test_patient_split_deterministic_and_seed_dependent(images):
    a = make_split(images, "patient", magnification="all", seed=5)
    assert a == make_split(images, "patient", magnification="all", seed=5)
    assert a != make_split(images, "patient", magnification="all", seed=6)
    assert len(a) == 7909


def test_patient_split_custom_ratios(images):
    rows = make_split(images, "patient", magnification="all", ratios=(0.7, 0.15, 0.15), seed=0)
    counts = Counter(r.split for r in rows)
    assert abs(counts["train"] / 7909 - 0.7) < 0.04
    assert abs(counts["test"] / 7909 - 0.15) < 0.04


@pytest.mark.parametrize("fold", [1, 2, 3, 4, 5])
def test_official_folds_reproduce_membership(images, breakhis_files, fold):
    rows = make_split(images, "official", magnification="all", fold=fold, seed=0)
    by_path = {r.path: r.split for r in rows}
    for row in breakhis_files:
        expected = row[f"fold{fold}"]
        assert (by_path[row["path"]] == "test") == (expected == "test")
    # validation is carved from train by group (accession), with both classes
    assert all(len(s) == 1 for s in _sides([r for r in rows if r.split != "test"]).values())
    assert {r.label for r in rows if r.split == "val"} == {"benign", "malignant"}


def test_official_fold_logs_patient_straddling(images, caplog):
    with caplog.at_level(logging.WARNING):
        make_split(images, "official", fold=1, magnification=40)
    assert "straddle" in caplog.text
    assert "14-22549" in caplog.text


@pytest.mark.parametrize("strategy", ["patient", "kfold"])
@pytest.mark.parametrize("group_by", ["accession", "patient_id"])
def test_duplicate_patient_14_13412_never_straddles(images, strategy, group_by):
    for seed in range(4):
        for fold in (1, 3):
            rows = make_split(images, strategy, magnification="all", group_by=group_by, seed=seed, fold=fold)
            assert len({r.split for r in rows if r.patient_id == "14-13412"}) == 1
            assert {r.subtype for r in rows if r.patient_id == "14-13412"} == {"DC", "LC"}  # both folders kept


@pytest.mark.parametrize("group_by", ["accession", "folder"])
def test_kfold_partitions_groups(images, group_by):
    folds = kfold_groups(images, group_by=group_by, num_folds=5, seed=2)
    all_groups = {group_key(im, group_by) for im in images}
    assert set().union(*folds) == all_groups
    assert sum(len(f) for f in folds) == len(all_groups)
    for k in range(1, 6):
        rows = make_split(images, "kfold", magnification=200, group_by=group_by, fold=k, num_folds=5, seed=2)
        test = {r.group for r in rows if r.split == "test"}
        assert test <= folds[k - 1]
        assert {r.label for r in rows if r.split == "test"} == {"benign", "malignant"}
        assert all(len(s) == 1 for s in _sides(rows).values())


def test_image_split_warns_and_is_stratified(images, caplog):
    with caplog.at_level(logging.WARNING):
        rows = make_split(images, "image", magnification=40, seed=0)
    assert "patients leak" in caplog.text
    counts = Counter(r.split for r in rows)
    assert abs(counts["train"] / len(rows) - 0.6) < 0.01
    assert any(len(s) > 1 for s in _sides(rows).values())  # groups straddle: that is the point


def test_check_split_refuses_shared_group():
    rows = [
        SplitRow("a/F1/40X/1.png", "g1", "p1", "benign", "A", 40, "train"),
        SplitRow("a/F1/40X/2.png", "g1", "p1", "benign", "A", 40, "test"),
    ]
    with pytest.raises(BreakHisError, match="g1 in test/train"):
        check_split(rows, "patient")


def test_check_split_refuses_missing_class():
    rows = [
        SplitRow("a/F1/40X/1.png", "g1", "p1", "benign", "A", 40, "train"),
        SplitRow("a/F2/40X/1.png", "g2", "p2", "malignant", "DC", 40, "train"),
        SplitRow("a/F3/40X/1.png", "g3", "p3", "benign", "A", 40, "val"),
        SplitRow("a/F4/40X/1.png", "g4", "p4", "malignant", "DC", 40, "val"),
        SplitRow("a/F5/40X/1.png", "g5", "p5", "benign", "A", 40, "test"),
    ]
    with pytest.raises(BreakHisError, match=r"test split has no malignant image.*--data\.test_ratio"):
        check_split(rows, "patient")


def test_too_few_groups_names_option(images):
    few = [im for im in images if im.accession in {"14-22549", "14-2523", "14-4364"}]
    with pytest.raises(BreakHisError, match="--data"):
        make_split(few, "patient", magnification="all")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategy": "random"}, "unknown split"),
        ({"group_by": "slide"}, "unknown grouping"),
        ({"ratios": (0.5, 0.1, 0.1)}, "sum to 1"),
        ({"strategy": "official", "fold": 6}, "folds 1-5"),
        ({"strategy": "kfold", "fold": 4, "num_folds": 3}, "fold 4"),
        ({"magnification": 50}, "magnification"),
    ],
)
def test_bad_options(images, kwargs, match):
    kwargs = {"strategy": "patient", **kwargs}
    strategy = kwargs.pop("strategy")
    with pytest.raises(BreakHisError, match=match):
        make_split(images, strategy, **kwargs)


def test_official_refuses_foreign_files(images):
    from dataclasses import replace

    fake = [replace(im, path=im.path.replace("-001.png", "-901.png")) for im in images]
    with pytest.raises(BreakHisError, match="not in the official BreakHis list"):
        assign_splits(fake, "official")


def test_csv_round_trip_and_skipped(images, tmp_path):
    rows = make_split(images, "patient", magnification=400, seed=0)
    rows = mark_skipped(rows, [rows[0].path])
    path = write_split_csv(rows, tmp_path / "splits.csv")
    assert path.read_text().splitlines()[0] == "path,group,patient_id,label,subtype,magnification,split,size"
    back = read_split_csv(path)
    assert back == rows
    assert back[0].split == "skipped"


def test_split_hash_names_the_assignment_and_fingerprint_the_files(images):
    from dataclasses import replace

    rows = make_split(images, "patient", magnification=40, seed=0)
    sized = [replace(r, size=100 + i) for i, r in enumerate(rows)]
    assert split_hash(sized) == split_hash(rows) == split_hash(list(reversed(rows)))  # order and sizes do not count
    assert split_hash(make_split(images, "patient", magnification=40, seed=1)) != split_hash(rows)
    moved = [replace(r, split="val") if i == 0 else r for i, r in enumerate(rows)]
    assert split_hash(moved) != split_hash(rows)
    assert data_fingerprint(sized) != data_fingerprint(rows)
    resized = [replace(r, size=r.size + 1) if i == 3 else r for i, r in enumerate(sized)]
    assert data_fingerprint(resized) != data_fingerprint(sized)


def test_bad_split_files_are_one_line_errors(tmp_path):
    with pytest.raises(BreakHisError, match="no such split file"):
        read_split_csv(tmp_path / "none.csv")
    (tmp_path / "old.csv").write_text("path,group,patient_id,label,subtype,magnification,split\n")
    with pytest.raises(BreakHisError, match="columns"):
        read_split_csv(tmp_path / "old.csv")
