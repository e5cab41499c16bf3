"""BreakHis file and folder naming: parse a path into label, subtype, magnification and patient."""

from __future__ import annotations

import re
from dataclasses import dataclass

from breakhis_lit.errors import BreakHisError

#: The first path components of every image in the official list (``folds.csv``).
OFFICIAL_PREFIX = "BreaKHis_v1/histology_slides/breast/"

LABELS: tuple[str, ...] = ("benign", "malignant")

#: Subtype folder name -> (label, code), in the order of the paper (benign first).
SUBTYPES: dict[str, tuple[str, str]] = {
    "adenosis": ("benign", "A"),
    "fibroadenoma": ("benign", "F"),
    "phyllodes_tumor": ("benign", "PT"),
    "tubular_adenoma": ("benign", "TA"),
    "ductal_carcinoma": ("malignant", "DC"),
    "lobular_carcinoma": ("malignant", "LC"),
    "mucinous_carcinoma": ("malignant", "MC"),
    "papillary_carcinoma": ("malignant", "PC"),
}
SUBTYPE_CODES: tuple[str, ...] = tuple(code for _, code in SUBTYPES.values())
SUBTYPE_NAMES: dict[str, str] = {code: name for name, (_, code) in SUBTYPES.items()}
SUBTYPE_LABELS: dict[str, str] = {code: label for label, code in SUBTYPES.values()}
MAGNIFICATIONS: tuple[int, ...] = (40, 100, 200, 400)

# SOB_B_A-14-22549AB-40-001.png: procedure_class_type-year-slide-magnification-sequence.png
_NAME_RE = re.compile(
    r"^SOB_(?P<letter>[BM])_(?P<code>[A-Z]+)-(?P<pid>[0-9]+-[0-9]+[A-Z]*)-(?P<mag>40|100|200|400)"
    r"-(?P<seq>[0-9]+)\.png$"
)
_FOLDER_RE = re.compile(r"^SOB_(?P<letter>[BM])_(?P<code>[A-Z]+)_(?P<pid>[0-9]+-[0-9]+[A-Z]*)$")
_NAME_HELP = "expected SOB_<B|M>_<type>-<year>-<slide>-<40|100|200|400>-<seq>.png"


@dataclass(frozen=True)
class BreakHisImage:
    """One BreakHis image, as named by the dataset.

    Attributes:
        path: Posix path in the official form ``BreaKHis_v1/histology_slides/breast/...``.
        filename: Base name, unique across the dataset.
        label: ``"benign"`` or ``"malignant"``.
        subtype: Subtype folder name, e.g. ``"adenosis"``.
        subtype_code: One of ``A F PT TA DC LC MC PC``.
        magnification: 40, 100, 200 or 400.
        patient_id: Year-slide token of the file name, e.g. ``"14-22549AB"`` (81 distinct values).
        patient_folder: Patient folder name, e.g. ``"SOB_B_A_14-22549AB"`` (82 distinct values).
        accession: Patient id without its letter suffix, e.g. ``"14-22549"`` (70 distinct values; the
            leak-safe grouping key).
        seq: Image number within patient and magnification, as written (``"001"``).
    """

    path: str
    filename: str
    label: str
    subtype: str
    subtype_code: str
    magnification: int
    patient_id: str
    patient_folder: str
    accession: str
    seq: str


def accession_of(patient_id: str) -> str:
    """Return the laboratory accession number: the patient id without its letter suffix.

    Args:
        patient_id: Patient id such as ``"14-22549AB"``.

    Returns:
        The accession number, e.g. ``"14-22549"``.
    """
    return patient_id.rstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _parse_name(filename: str) -> dict[str, str | int] | str:
    """Parse a file name; return the fields, or the reason it does not parse."""
    m = _NAME_RE.match(filename)
    if m is None or m["code"] not in SUBTYPE_NAMES:
        return f"file name does not parse ({_NAME_HELP})"
    code = m["code"]
    label = SUBTYPE_LABELS[code]
    if (m["letter"] == "B") != (label == "benign"):
        return f"letter {m['letter']} disagrees with subtype {code} ({label})"
    return {
        "label": label,
        "subtype_code": code,
        "subtype": SUBTYPE_NAMES[code],
        "patient_id": m["pid"],
        "accession": accession_of(m["pid"]),
        "magnification": int(m["mag"]),
        "seq": m["seq"],
    }


def parse_filename(filename: str) -> dict[str, str | int]:
    """Parse a BreakHis image file name.

    Args:
        filename: Base name such as ``"SOB_B_A-14-22549AB-40-001.png"``.

    Returns:
        A dict with ``label``, ``subtype_code``, ``subtype``, ``patient_id``, ``accession``,
        ``magnification`` (int) and ``seq``.

    Raises:
        BreakHisError: If the name does not follow the BreakHis scheme.
    """
    info = _parse_name(filename)
    if isinstance(info, str):
        raise BreakHisError(f"{filename}: {info}; rename or remove it")
    return info


def try_parse_filename(filename: str) -> dict[str, str | int] | None:
    """Like :func:`parse_filename` but return ``None`` for names outside the BreakHis scheme."""
    try:
        return parse_filename(filename)
    except BreakHisError:
        return None


def parse_path(path: str) -> BreakHisImage:
    """Parse an official-form relative path and check the folders agree with the file name.

    Args:
        path: ``BreaKHis_v1/histology_slides/breast/<label>/SOB/<subtype>/<folder>/<mag>X/<file>.png``.

    Returns:
        The parsed :class:`BreakHisImage`.

    Raises:
        BreakHisError: If the path does not have the BreakHis layout, the file name does not parse or a
            folder name disagrees with the file name.
    """
    if not path.startswith(OFFICIAL_PREFIX):
        raise BreakHisError(f"{path}: not under {OFFICIAL_PREFIX}; use the BreakHis folder layout")
    parts = path[len(OFFICIAL_PREFIX) :].split("/")
    if len(parts) != 6 or parts[1] != "SOB":
        raise BreakHisError(
            f"{path}: expected <benign|malignant>/SOB/<subtype>/<patient folder>/<mag>X/<file>.png below "
            f"breast/; move or remove the file"
        )
    label_dir, _, subtype_dir, folder, mag_dir, filename = parts
    info = _parse_name(filename)
    if isinstance(info, str):
        raise BreakHisError(f"{path}: {info}; rename or remove it")
    problems = []
    if subtype_dir not in SUBTYPES:
        problems.append(f"unknown subtype folder {subtype_dir!r}")
    elif SUBTYPES[subtype_dir][1] != info["subtype_code"]:
        problems.append(f"subtype folder {subtype_dir} vs file subtype {info['subtype_code']}")
    if label_dir != info["label"]:
        problems.append(f"label folder {label_dir} vs file label {info['label']}")
    fm = _FOLDER_RE.match(folder)
    if fm is None:
        problems.append(f"patient folder {folder!r} does not parse (expected SOB_<B|M>_<type>_<year>-<slide>)")
    else:
        if fm["code"] != info["subtype_code"] or (fm["letter"] == "B") != (info["label"] == "benign"):
            problems.append(f"patient folder {folder} vs file subtype {info['subtype_code']}")
        if fm["pid"] != info["patient_id"]:
            problems.append(f"patient folder {folder} vs file patient id {info['patient_id']}")
    if mag_dir != f"{info['magnification']}X":
        problems.append(f"magnification folder {mag_dir} vs file magnification {info['magnification']}X")
    if problems:
        raise BreakHisError(f"{path}: {'; '.join(problems)}; move or rename the file")
    return BreakHisImage(
        path=path,
        filename=filename,
        label=str(info["label"]),
        subtype=str(info["subtype"]),
        subtype_code=str(info["subtype_code"]),
        magnification=int(info["magnification"]),
        patient_id=str(info["patient_id"]),
        patient_folder=folder,
        accession=str(info["accession"]),
        seq=str(info["seq"]),
    )


def _letter(label: str) -> str:
    return "B" if label == "benign" else "M"


def patient_folder(subtype_code: str, patient_id: str) -> str:
    """The patient folder name of a subtype and patient, e.g. ``"SOB_B_A_14-22549AB"``."""
    return f"SOB_{_letter(SUBTYPE_LABELS[subtype_code])}_{subtype_code}_{patient_id}"


def image_path(subtype_code: str, patient_id: str, magnification: int, seq: int | str) -> str:
    """Build the official relative path of an image (the inverse of :func:`parse_path`).

    Args:
        subtype_code: One of ``A F PT TA DC LC MC PC``.
        patient_id: Patient id such as ``"14-22549AB"``.
        magnification: 40, 100, 200 or 400.
        seq: Image number (an int is written with three digits).

    Returns:
        The path in the official form.
    """
    label = SUBTYPE_LABELS[subtype_code]
    seq_s = f"{seq:03d}" if isinstance(seq, int) else seq
    folder = patient_folder(subtype_code, patient_id)
    name = f"SOB_{_letter(label)}_{subtype_code}-{patient_id}-{magnification}-{seq_s}.png"
    return f"{OFFICIAL_PREFIX}{label}/SOB/{SUBTYPE_NAMES[subtype_code]}/{folder}/{magnification}X/{name}"


def parse_magnification(value: int | str | None) -> int | None:
    """Normalise a magnification option.

    Args:
        value: 40, 100, 200, 400 (int or str, with or without an ``X``), or ``"all"``/``None`` for all.

    Returns:
        The magnification as an int, or ``None`` for all magnifications.

    Raises:
        BreakHisError: For any other value.
    """
    if value is None:
        return None
    text = str(value).strip().lower()
    if text == "all":
        return None
    text = text.removesuffix("x")
    if text.isdigit() and int(text) in MAGNIFICATIONS:
        return int(text)
    raise BreakHisError(
        f"magnification {value!r}: unknown magnification; use one of 40, 100, 200, 400 (or 40X...) or all"
    )
