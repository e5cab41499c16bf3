import logging
from collections import Counter, defaultdict

import pytest

from breakhis_lit.data.naming import parse_path
from breakhis_lit.data.splits import (
    SplitRow,
    assign_splits,
    check_duplicates,
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


def _dc_lc_copies(images):
    """Digests as if the DC and LC folders of patient 14-13412 held byte-identical files (same mag and number)."""
    digests = {}
    for im in images:
        if im.patient_id == "14-13412":
            digests[im.path] = f"{im.magnification}-{im.path.rsplit('-', 1)[1]}"  # equal for DC and LC copies
        else:
            digests[im.path] = im.path
    assert len(set(digests.values())) < len(digests)
    return digests


@pytest.mark.parametrize("strategy", ["patient", "kfold"])
@pytest.mark.parametrize("group_by", ["accession", "patient_id"])
def test_byte_identical_dc_lc_copies_allowed_when_grouped(images, strategy, group_by, caplog):
    digests = _dc_lc_copies(images)
    for seed in range(3):
        rows = make_split(images, strategy, magnification="all", group_by=group_by, seed=seed)
        with caplog.at_level(logging.WARNING):
            check_duplicates(rows, digests, strategy, group_by)
    assert "byte-identical" not in caplog.text


def test_byte_identical_copies_on_two_sides_refused_by_folder_grouping(images):
    digests = _dc_lc_copies(images)
    refused = 0
    for seed in range(6):
        rows = make_split(images, "patient", magnification="all", group_by="folder", seed=seed)
        dc_lc = {r.subtype: r.split for r in rows if r.patient_id == "14-13412"}
        if dc_lc["DC"] == dc_lc["LC"]:
            check_duplicates(rows, digests, "patient", "folder")  # same side this time: no leak
            continue
        refused += 1
        with pytest.raises(BreakHisError) as err:
            check_duplicates(rows, digests, "patient", "folder")
        message = str(err.value)
        assert "\n" not in message
        assert "byte-identical images on two sides (different folder groups)" in message
        assert "SOB_M_DC_14-13412" in message
        assert "SOB_M_LC_14-13412" in message
        assert "--data.group_by accession" in message
    assert refused  # some seed splits the two folders


def test_byte_identical_copies_in_official_folds_logged(images, caplog):
    rows = make_split(images, "official", magnification="all", fold=1)  # fold 1: DC train, LC test
    with caplog.at_level(logging.WARNING):
        check_duplicates(rows, _dc_lc_copies(images), "official", "accession")
    assert "byte-identical images on two sides" in caplog.text
    assert "SOB_M_LC_14-13412" in caplog.text


@pytest.mark.parametrize("same_side", [True, False])
def test_byte_identical_copies_of_two_patients_refused(same_side):
    rows = [
        SplitRow("b/SOB_B_A_14-1/40X/SOB_B_A-14-1-40-001.png", "14-1", "14-1", "benign", "A", 40, "train"),
        SplitRow("b/SOB_B_A_14-2/40X/SOB_B_A-14-2-40-007.png", "14-2", "14-2", "benign", "A", 40,
                 "train" if same_side else "val"),
        SplitRow("b/SOB_B_A_14-2/40X/SOB_B_A-14-2-40-008.png", "14-2", "14-2", "benign", "A", 40, "skipped"),
    ]  # fmt: skip
    digests = {rows[0].path: "x", rows[1].path: "x", rows[2].path: "x"}
    with pytest.raises(BreakHisError) as err:
        check_duplicates(rows, digests, "image")
    message = str(err.value)
    assert message.startswith("split image: 1 set(s) of byte-identical images filed under different patients: ")
    assert f"{rows[0].path} (14-1) = {rows[1].path} (14-2)" in message
    assert rows[2].path not in message  # skipped
    check_duplicates(rows[:1] + rows[2:], digests, "image")  # one live copy: fine


def test_data_without_a_class_is_named_as_such(images):
    benign_only = [im for im in images if im.label == "benign"]
    with pytest.raises(BreakHisError) as err:
        make_split(benign_only, "patient", magnification=40)
    message = str(err.value)
    assert message.startswith("split patient: the data holds no malignant image at all (625 images, magnification 40)")
    assert "--data.root" in message
    assert "train_ratio" not in message


def test_all_images_of_a_class_skipped_is_named_as_such(images):
    rows = make_split(images, "patient", magnification=40)
    rows = mark_skipped(rows, [r.path for r in rows if r.label == "malignant"])
    with pytest.raises(BreakHisError) as err:
        check_split(rows, "patient")
    assert "all 1370 malignant image(s) (magnification 40) were skipped as unreadable" in str(err.value)
