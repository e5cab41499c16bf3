"""The ``BreakHis`` domain object on the real file structure (all 7,909 official paths, as tiny PNGs)."""

from __future__ import annotations

import os
import sys
from collections import Counter

import pytest

from breakhis_lit.data.breakhis import BreakHis, classes_of, example_indices
from breakhis_lit.data.naming import accession_of
from breakhis_lit.data.splits import SKIPPED, data_fingerprint, read_split_csv, split_hash, write_split_csv
from breakhis_lit.errors import BreakHisError


@pytest.fixture(scope="module")
def patient_40x(breakhis_tree) -> BreakHis:
    data = BreakHis(breakhis_tree, magnification="40X", task="subtype")
    data.resolve()
    return data


def test_classes_of_each_task():
    assert classes_of("binary") == ["benign", "malignant"]
    assert classes_of("subtype") == ["A", "F", "PT", "TA", "DC", "LC", "MC", "PC"]
    assert BreakHis("anywhere", task="subtype").num_classes == 8  # no scan before resolve()
    with pytest.raises(BreakHisError, match=r"task 'tri': unknown value; use one of binary, subtype \(--data\.task\)"):
        classes_of("tri")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"magnification": 50}, "magnification 50: unknown magnification"),
        ({"split": "random"}, r"--data\.split"),
        ({"group_by": "slide"}, r"--data\.group_by"),
        ({"ratios": (0.5, 0.1, 0.3)}, "must be non-negative and sum to 1"),
        ({"split": "official", "fold": 6}, "the official split has folds 1-5"),
        ({"split": "kfold", "num_folds": 3, "fold": 4}, "k-fold needs num_folds >= 2"),
    ],
)
def test_options_are_checked_when_built(options, message):
    with pytest.raises(BreakHisError, match=message):
        BreakHis("anywhere", **options)


def test_nothing_is_known_before_resolve(tmp_path):
    data = BreakHis(tmp_path)
    assert data.index is None
    assert data.rows == []
    assert data.groups == []
    for call in (lambda: data.records("train"), data.files, data.fingerprint, data.split_hash):
        with pytest.raises(BreakHisError, match=r"not (resolved|set up)"):
            call()


def test_resolve_is_idempotent_and_keeps_every_image(breakhis_tree, official_summary):
    data = BreakHis(breakhis_tree, magnification="all")
    rows = data.resolve()
    assert data.resolve() is rows
    assert len(rows) == official_summary["images"]
    assert data.index is not None
    assert data.index.missing == data.index.unexpected == []
    assert Counter(r.label for r in rows) == {"benign": 2480, "malignant": 5429}


@pytest.mark.parametrize(("group_by", "groups"), [("accession", 70), ("patient_id", 81), ("folder", 82)])
def test_groups_of_each_grouping(breakhis_tree, group_by, groups):
    data = BreakHis(breakhis_tree, magnification="all", group_by=group_by)
    data.resolve()
    assert len(data.groups) == groups
    assert data.groups == sorted(data.groups)


def test_records_per_stage_partition_the_split_by_patient(patient_40x, official_summary):
    counts = official_summary["per_magnification"]["40X"]
    records = {stage: patient_40x.records(stage) for stage in ("train", "val", "test")}
    assert sum(map(len, records.values())) == len(patient_40x.rows) == counts["benign"] + counts["malignant"]
    groups = {stage: {r.group for r in recs} for stage, recs in records.items()}
    assert not (groups["train"] & groups["val"])
    assert not (groups["train"] & groups["test"])
    assert not (groups["val"] & groups["test"])
    assert {r.magnification for recs in records.values() for r in recs} == {40}
    for stage, recs in records.items():
        assert [r.path for r in recs] == sorted(r.path for r in recs)
        rows = {r.path: r for r in patient_40x.rows if r.split == stage}
        assert [patient_40x.classes[rec.label] for rec in recs] == [rows[rec.path].subtype for rec in recs]
    # 14-13412 is filed under DC and LC with the same images: one accession group, so one side.
    assert len({r.split for r in patient_40x.rows if r.patient_id == "14-13412"}) == 1
    with pytest.raises(BreakHisError, match="stage 'predict': unknown value"):
        patient_40x.records("predict")


def test_binary_records_label_by_malignancy(breakhis_tree):
    data = BreakHis(breakhis_tree, magnification=100)
    data.resolve()
    labels = Counter(rec.label for stage in ("train", "val", "test") for rec in data.records(stage))
    assert labels == {0: 644, 1: 1437}


def test_split_table_hash_and_fingerprint(patient_40x, breakhis_tree):
    rows = patient_40x.rows
    assert patient_40x.split_hash() == split_hash(rows)
    assert patient_40x.fingerprint() == data_fingerprint(rows)
    size = os.path.getsize(next(breakhis_tree.rglob("*.png")))
    assert {r.size for r in rows} == {size}
    files = patient_40x.files()
    assert [p for p, _ in files] == [r.path for r in rows]
    assert all(f.is_file() for _, f in files[:50])
    again = BreakHis(breakhis_tree, magnification=40, task="subtype")
    assert again.resolve() == rows  # deterministic
    other = BreakHis(breakhis_tree, magnification=40, task="subtype", seed=1)
    assert other.resolve() != rows
    assert other.split_hash() != patient_40x.split_hash()
    assert other.fingerprint() == patient_40x.fingerprint()  # same files


def test_official_folds_have_their_published_test_sizes(breakhis_tree, official_summary):
    for fold, size in official_summary["fold_test_images"].items():
        data = BreakHis(breakhis_tree, magnification="all", split="official", group_by="folder", fold=fold)
        assert Counter(r.split for r in data.resolve())["test"] == size


def test_split_file_binds_the_split(patient_40x, breakhis_tree, tmp_path):
    path = write_split_csv(patient_40x.rows, tmp_path / "splits.csv")
    bound = BreakHis(breakhis_tree, magnification=40, task="subtype", seed=7, split_file=path)
    assert bound.resolve() == read_split_csv(path) == patient_40x.rows
    with pytest.raises(BreakHisError, match=r"--data\.magnification 100: the run's split .* holds 40X images"):
        BreakHis(breakhis_tree, magnification=100, split_file=path).resolve()


def test_trained_on_refuses_test_patients_the_run_trained_on(patient_40x, breakhis_tree, tmp_path):
    path = write_split_csv(patient_40x.rows, tmp_path / "splits.csv")
    same = BreakHis(breakhis_tree, magnification=40, task="subtype", trained_on=path)
    assert same.resolve() == patient_40x.rows
    with pytest.raises(BreakHisError, match="belong to patients the run trained or validated on"):
        BreakHis(breakhis_tree, magnification=40, seed=1, trained_on=path).resolve()


def test_check_decoded_skips_unreadable_images(breakhis_tree):
    data = BreakHis(breakhis_tree, magnification=40)
    rows = data.resolve()
    bad = [(rows[0].path, "truncated")]
    data.check_decoded(bad, {})
    assert [r.path for r in data.rows if r.split == SKIPPED] == [rows[0].path]
    assert rows[0].path not in {p for p, _ in data.files()}
    assert all(rec.path != rows[0].path for stage in ("train", "val", "test") for rec in data.records(stage))


def test_check_decoded_refuses_an_unreadable_image_of_a_bound_split(patient_40x, breakhis_tree, tmp_path):
    path = write_split_csv(patient_40x.rows, tmp_path / "splits.csv")
    bound = BreakHis(breakhis_tree, magnification=40, split_file=path)
    bound.resolve()
    with pytest.raises(BreakHisError, match=r"unreadable now .* but scored by the run's split"):
        bound.check_decoded([(patient_40x.rows[3].path, "truncated")], {})


def test_check_decoded_refuses_copies_on_two_sides(breakhis_tree):
    # group_by=folder: two folders of one accession (e.g. 14-13412's DC and LC) may land on two sides.
    for seed in range(20):
        data = BreakHis(breakhis_tree, magnification=40, group_by="folder", seed=seed)
        sides: dict[str, dict[str, str]] = {}
        for r in data.resolve():
            sides.setdefault(accession_of(r.patient_id), {}).setdefault(r.split, r.path)
        straddling = [paths for paths in sides.values() if len(paths) > 1]
        if straddling:
            break
    first, second = list(straddling[0].values())[:2]
    with pytest.raises(BreakHisError, match="byte-identical images on two sides"):
        data.check_decoded([], {first: "same", second: "same"})


def test_check_decoded_refuses_copies_under_two_patients(patient_40x):
    a = patient_40x.rows[0]
    b = next(r for r in patient_40x.rows if accession_of(r.patient_id) != accession_of(a.patient_id))
    with pytest.raises(BreakHisError, match="filed under different patients"):
        patient_40x.check_decoded([], {a.path: "same", b.path: "same"})


@pytest.mark.parametrize(
    ("group_by", "group"), [("accession", "14-22549"), ("patient_id", "14-22549AB"), ("folder", "SOB_B_A_14-22549AB")]
)
def test_file_record_reads_a_breakhis_name_anywhere(tmp_path, group_by, group):
    data = BreakHis(tmp_path / "no-root", task="subtype", group_by=group_by)
    record = data.file_record(tmp_path / "SOB_B_A-14-22549AB-100-001.png")
    assert (record.label, record.patient_id, record.group, record.magnification) == (0, "14-22549AB", group, 100)
    assert record.path == str(tmp_path / "SOB_B_A-14-22549AB-100-001.png")
    unknown = data.file_record("/x/slide.jpg")
    assert (unknown.label, unknown.patient_id, unknown.group, unknown.magnification) == (-1, "", "", None)


def test_demo_data_is_generated_on_prepare(tmp_path):
    root = tmp_path / "demo" / "BreaKHis_v1"
    data = BreakHis(root, demo=True)
    data.prepare()
    assert (tmp_path / "demo" / "demo.json").is_file()
    assert len(data.resolve()) > 0
    BreakHis(tmp_path / "other").prepare()  # demo off: nothing written
    assert not (tmp_path / "other").exists()


def test_the_domain_object_never_imports_torch():
    import subprocess

    code = "import sys, breakhis_lit.data.breakhis; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


def test_example_indices_are_evenly_spaced_per_class(patient_40x):
    records = patient_40x.records("train")
    picks = example_indices(records, patient_40x.num_classes, per_class=3)
    by_class = Counter(records[i].label for i in picks)
    for c in range(patient_40x.num_classes):
        assert by_class[c] == min(3, sum(r.label == c for r in records))
    first_class = sorted((r for r in records if r.label == records[picks[0]].label), key=lambda r: r.path)
    middle = round((len(first_class) - 1) / 2)
    assert [records[i].path for i in picks[:3]] == [first_class[k].path for k in (0, middle, -1)]
    assert example_indices(records, patient_40x.num_classes, per_class=0) == []
