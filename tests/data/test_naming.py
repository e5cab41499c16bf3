import pytest

from breakhis_lit.data.naming import (
    accession_of,
    image_path,
    parse_filename,
    parse_magnification,
    parse_path,
)
from breakhis_lit.errors import BreakHisError

PATH = "BreaKHis_v1/histology_slides/breast/benign/SOB/adenosis/SOB_B_A_14-22549AB/40X/SOB_B_A-14-22549AB-40-001.png"


def test_parse_path_fields():
    im = parse_path(PATH)
    assert im.path == PATH
    assert im.filename == "SOB_B_A-14-22549AB-40-001.png"
    assert (im.label, im.subtype, im.subtype_code) == ("benign", "adenosis", "A")
    assert im.magnification == 40
    assert (im.patient_id, im.patient_folder, im.accession, im.seq) == (
        "14-22549AB",
        "SOB_B_A_14-22549AB",
        "14-22549",
        "001",
    )


def test_image_path_round_trip():
    assert image_path("A", "14-22549AB", 40, 1) == PATH
    im = parse_path(image_path("LC", "14-13412", 400, 7))
    assert (im.label, im.subtype_code, im.magnification, im.seq) == ("malignant", "LC", 400, "007")


@pytest.mark.parametrize(
    ("pid", "acc"), [("14-22549AB", "14-22549"), ("14-3411F", "14-3411"), ("14-13412", "14-13412")]
)
def test_accession(pid, acc):
    assert accession_of(pid) == acc


@pytest.mark.parametrize(
    "bad",
    [
        "SOB_B_A-14-22549AB-40-001.jpg",
        "SOB_B_XX-14-22549AB-40-001.png",
        "SOB_B_A-14-22549AB-50-001.png",
        "SOB_M_A-14-22549AB-40-001.png",  # malignant letter, benign subtype
        "image001.png",
    ],
)
def test_parse_filename_rejects(bad):
    with pytest.raises(BreakHisError, match="rename or remove"):
        parse_filename(bad)


@pytest.mark.parametrize(
    ("path", "what"),
    [
        (PATH.replace("/40X/", "/100X/"), "magnification folder 100X"),
        (PATH.replace("/adenosis/", "/fibroadenoma/"), "subtype folder fibroadenoma"),
        (PATH.replace("SOB_B_A_14-22549AB/", "SOB_B_A_14-99999/"), "patient id"),
        (PATH.replace("/benign/", "/malignant/"), "label folder malignant"),
    ],
)
def test_parse_path_checks_folders(path, what):
    with pytest.raises(BreakHisError, match=what):
        parse_path(path)


@pytest.mark.parametrize(
    ("value", "expected"), [(40, 40), ("40", 40), ("40X", 40), ("400x", 400), ("all", None), (None, None)]
)
def test_parse_magnification(value, expected):
    assert parse_magnification(value) == expected


@pytest.mark.parametrize("value", [50, "4OX", "", "40XX"])
def test_parse_magnification_rejects(value):
    with pytest.raises(BreakHisError, match="magnification"):
        parse_magnification(value)
