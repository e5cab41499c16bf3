import csv
import json
import os
import shutil

import pytest
from PIL import Image

from breakhis_lit.commands.data import main
from breakhis_lit.errors import BreakHisError


def test_summary_json(breakhis_tree, official_summary, capsys):
    assert main(["summary", "--root", str(breakhis_tree)]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = official_summary
    assert out["images"] == 7909
    assert out["per_magnification"]["40X"]["benign"] == expected["per_magnification"]["40X"]["benign"]
    assert (out["patient_folders"], out["patient_ids"], out["accession_groups"]) == (82, 81, 70)
    assert (out["missing"], out["unexpected"]) == (0, 0)
    assert {code: s["images"] for code, s in out["subtypes"].items()} == {
        code: s["images"] for code, s in expected["subtypes"].items()
    }


def test_summary_lists_demo_files_as_unexpected(demo_root, capsys):
    assert main(["summary", "--root", str(demo_root)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 576
    assert out["unexpected"] == 576
    assert len(out["unexpected_files"]) == 100
    assert out["files_truncated_to"] == 100


def test_check_ok_and_corrupt(demo_root, tmp_path, capsys):
    copy = tmp_path / "demo"
    shutil.copytree(demo_root / "BreaKHis_v1", copy / "BreaKHis_v1", copy_function=os.link)
    assert main(["check", "--root", str(copy), "--magnification", "400"]) == 0
    assert "144 images checked: all readable" in capsys.readouterr().out
    victims = sorted((copy / "BreaKHis_v1").rglob("*-400-002.png"))[:2]
    victims[0].unlink()
    victims[0].write_bytes(b"")
    data = victims[1].read_bytes()
    victims[1].unlink()
    victims[1].write_bytes(data[:100])
    assert main(["check", "--root", str(copy / "BreaKHis_v1")]) == 1
    out = capsys.readouterr().out
    assert f"{victims[0]} (zero bytes)" in out
    assert f"{victims[1]} (truncated)" in out


def test_check_names_a_too_large_image(demo_root, tmp_path, capsys):
    copy = tmp_path / "demo"
    shutil.copytree(demo_root / "BreaKHis_v1", copy / "BreaKHis_v1", copy_function=os.link)
    victim = sorted((copy / "BreaKHis_v1").rglob("*-100-003.png"))[0]
    victim.unlink()
    Image.new("1", (15000, 15000)).save(victim, format="PNG", compress_level=1)
    assert main(["check", "--root", str(copy), "--magnification", "100"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == f"unreadable: {victim} (too large: 15000×15000 pixels)"
    assert "1 of 144 images unreadable" in captured.err


def test_check_lists_byte_identical_images(demo_root, tmp_path, capsys):
    copy = tmp_path / "demo"
    shutil.copytree(demo_root / "BreaKHis_v1", copy / "BreaKHis_v1", copy_function=os.link)
    first, second = sorted((copy / "BreaKHis_v1").rglob("*-200-00[12].png"))[:2]
    second.unlink()
    second.write_bytes(first.read_bytes())
    assert main(["check", "--root", str(copy), "--magnification", "200"]) == 0
    captured = capsys.readouterr()
    assert f"identical: {first} = {second}" in captured.out.splitlines()
    assert "1 set(s) of byte-identical images (2 files)" in captured.err
    assert "144 images checked: all readable" in captured.out


def test_split_writes_csv_and_refuses_overwrite(demo_root, tmp_path, capsys):
    out = tmp_path / "sub" / "split.csv"
    args = ["split", "--root", str(demo_root), "--magnification", "40X", "--split", "patient", "--seed", "1"]
    assert main([*args, "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "group", "patient_id", "label", "subtype", "magnification", "split", "size"]
    assert len(rows) == 144
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    with pytest.raises(BreakHisError, match=r"already exists.*--force"):
        main([*args, "--out", str(out)])
    assert main([*args, "--seed", "2", "--group-by", "folder", "--out", str(out), "--force"]) == 0


def test_split_kfold_and_bad_input(demo_root, tmp_path):
    out = tmp_path / "k.csv"
    assert main(["split", "--root", str(demo_root), "--split", "kfold", "--fold", "2", "--out", str(out)]) == 0
    with pytest.raises(BreakHisError, match="magnification"):
        main(["split", "--root", str(demo_root), "--magnification", "41", "--out", str(tmp_path / "x.csv")])
    with pytest.raises(BreakHisError, match="does not exist"):
        main(["summary", "--root", str(tmp_path / "missing")])
    with pytest.raises(SystemExit):
        main(["split", "--root", str(demo_root)])  # --out is required


@pytest.mark.parametrize(
    "args",
    [
        ["split", "--train-ratio", "0.5"],
        ["split", "--val-ratio", "0.0", "--test-ratio", "0.4"],
        ["split", "--split", "official", "--fold", "9"],
        ["split", "--split", "kfold", "--num-folds", "1"],
        ["split", "--split", "kfold", "--num-folds", "3", "--fold", "4"],
        ["split", "--magnification", "50"],
        ["summary", "--root", "{missing}"],
        ["check", "--root", "{missing}"],
        ["split", "--root", "{missing}"],
    ],
    ids=lambda a: " ".join(a),
)
def test_every_hint_names_an_option_of_the_verb(demo_root, tmp_path, args):
    # The data layer names the options as `breakhis fit` spells them (--data.val_ratio); this verb takes --val-ratio.
    import argparse
    import re

    from breakhis_lit.commands.data import _subparser, build_parser

    args = [a.replace("{missing}", str(tmp_path / "nowhere")) for a in args]
    full = [args[0]]
    if "--root" not in args:
        full += ["--root", str(demo_root)]
    if args[0] == "split":
        full += ["--out", str(tmp_path / "split.csv")]
    with pytest.raises(BreakHisError) as info:
        main(full + args[1:])
    parser: argparse.ArgumentParser = _subparser(build_parser(), args[0])
    accepted = {flag for action in parser._actions for flag in action.option_strings}
    named = re.findall(r"--[a-z][\w.-]*[a-z]", str(info.value))
    assert [flag for flag in named if flag not in accepted] == [], str(info.value)
