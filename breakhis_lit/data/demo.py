"""Synthetic BreakHis-shaped demo data: learnable in a minute, with lesion masks and per-patient stains.

``generate_demo(DIR)`` writes ``DIR/BreaKHis_v1/histology_slides/breast/...`` with the real naming scheme and
folder layout (8 subtypes x ``patients_per_subtype`` patients x 4 magnifications x ``images_per_magnification``
PNGs for malignant patients, half as many for benign ones, as BreakHis is about 1:2 benign:malignant),
``DIR/masks/<same relative path>`` (binary lesion mask of every malignant image; scanning ignores it) and
``DIR/demo.json`` (the parameters). Images are pink eosin tissue with purple nuclei; malignant images also
carry a lesion-like cluster of large, dark, irregular nuclei of varying strength, and some benign images carry a
weak look-alike, so the lesion cue is informative but imperfect. Every patient has its own stain colour, nucleus
density/size and texture, so a patient-leaking split (``split=image``) scores visibly higher than a patient-aware
one. Generation is deterministic (same bytes for the same arguments) and uses numpy and PIL only.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from breakhis_lit.data.naming import (
    MAGNIFICATIONS,
    OFFICIAL_PREFIX,
    SUBTYPE_CODES,
    SUBTYPE_LABELS,
    accession_of,
    image_path,
)
from breakhis_lit.errors import BreakHisError

DEMO_MARKER = "demo.json"
DEFAULT_SIZE = (160, 105)
_MAG_SCALE = {40: 0.75, 100: 1.0, 200: 1.3, 400: 1.7}
MIMIC_RATE = 0.4  # benign images with a weak lesion look-alike (keeps the lesion cue imperfect)
_WHITE = np.array([246.0, 240.0, 246.0], dtype=np.float32)


def benign_images(images_per_magnification: int) -> int:
    """Images per benign patient and magnification: half the malignant count (BreakHis is ~1:2)."""
    return max(1, images_per_magnification // 2)


def demo_image_count(patients_per_subtype: int = 3, images_per_magnification: int = 8) -> int:
    """Number of images :func:`generate_demo` writes."""
    per_patient = images_per_magnification + benign_images(images_per_magnification)
    return 4 * patients_per_subtype * len(MAGNIFICATIONS) * per_patient


def _patient_ids(seed: int, patients_per_subtype: int) -> dict[str, list[str]]:
    """Deterministic, unique patient ids per subtype; two benign folders share an accession number."""
    rng = np.random.default_rng([seed, 1000])
    numbers = rng.choice(np.arange(1000, 30000), size=len(SUBTYPE_CODES) * patients_per_subtype, replace=False)
    ids: dict[str, list[str]] = {}
    for s, code in enumerate(SUBTYPE_CODES):
        ids[code] = []
        for p in range(patients_per_subtype):
            number = int(numbers[s * patients_per_subtype + p])
            suffix = "AB" if (s + p) % 3 == 1 else ""
            ids[code].append(f"{14 + (p % 2)}-{number}{suffix}")
    if patients_per_subtype >= 2:  # like 14-21998: one patient with a fibroadenoma and a phyllodes tumour slide
        acc = accession_of(ids["PT"][0])
        ids["PT"][0] = f"{acc}AB"
        ids["F"][-1] = f"{acc}CD"
    return ids


def _smooth_noise(rng: np.random.Generator, w: int, h: int, cells: tuple[int, int]) -> np.ndarray:
    """Low-frequency noise in [0, 1], ``[h, w]``."""
    small = (rng.random((cells[1], cells[0])) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0


def _blobs(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    centres: np.ndarray,
    radius: float,
    elongation: float,
    irregular: float,
    value: int,
) -> None:
    """Draw irregular polygon nuclei (7 vertices each) at ``centres`` ``[n, 2]``."""
    n = len(centres)
    if n == 0:
        return
    k = 7
    angles = np.linspace(0, 2 * np.pi, k, endpoint=False)[None, :] + rng.random((n, 1)) * np.pi
    r = radius * rng.uniform(0.75, 1.25, (n, 1)) * (1 + irregular * rng.uniform(-1, 1, (n, k)))
    stretch = 1 + elongation * rng.random((n, 1))
    theta = rng.random((n, 1)) * np.pi
    dx, dy = r * np.cos(angles) * stretch, r * np.sin(angles) / stretch
    xs = centres[:, :1] + dx * np.cos(theta) - dy * np.sin(theta)
    ys = centres[:, 1:] + dx * np.sin(theta) + dy * np.cos(theta)
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        draw.polygon(list(zip(x, y, strict=True)), fill=value)


def _points_in(mask: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0 or n <= 0:
        return np.zeros((0, 2))
    pick = rng.integers(0, len(xs), n)
    return np.stack([xs[pick], ys[pick]], axis=1).astype(np.float64) + rng.random((n, 2))


def render_image(
    rng: np.random.Generator,
    size: tuple[int, int],
    subtype_code: str,
    magnification: int,
    stain: np.ndarray,
    style: tuple[float, float, int] = (1.0, 1.0, 6),
) -> tuple[np.ndarray, np.ndarray | None]:
    """Render one synthetic histology image.

    Args:
        rng: Generator for this image.
        size: ``(width, height)``.
        subtype_code: Subtype (malignant subtypes get a lesion).
        magnification: 40, 100, 200 or 400 (sets the nucleus scale).
        stain: ``[2, 3]`` eosin and hematoxylin RGB colours of the patient.
        style: Patient's nucleus density factor, nucleus size factor and background texture cells.

    Returns:
        uint8 ``[H, W, 3]`` image and, for malignant subtypes, the bool ``[H, W]`` lesion mask.
    """
    w, h = size
    dens_f, size_f, cells = style
    s = _MAG_SCALE[magnification] * min(w, h) / 105.0 * size_f
    eosin, hema = stain[0], stain[1]
    density = 0.45 + 0.45 * _smooth_noise(rng, w, h, (cells, max(2, cells * 2 // 3)))
    img = _WHITE * (1 - density[..., None]) + eosin * density[..., None]
    malignant = SUBTYPE_LABELS[subtype_code] == "malignant"

    nuclei = Image.new("L", size, 0)
    draw = ImageDraw.Draw(nuclei)
    n_bg = int(w * h / (150 * s * s) * dens_f)
    if subtype_code in ("A", "TA", "PC"):  # gland-like rings
        n_rings = max(1, n_bg // 14)
        centres = rng.random((n_rings, 2)) * [w, h]
        ang = rng.random((n_rings, 12)) * 2 * np.pi
        rad = (4 + 3 * rng.random((n_rings, 1))) * s * 1.6
        pts = np.stack([centres[:, :1] + rad * np.cos(ang), centres[:, 1:] + rad * np.sin(ang)], -1).reshape(-1, 2)
    else:
        pts = rng.random((n_bg, 2)) * [w, h]
    elong = 1.2 if subtype_code in ("F", "PT", "LC") else 0.3
    _blobs(draw, rng, pts, 1.5 * s, elong, 0.1, 200)

    lesion = None
    mimic = not malignant and rng.random() < MIMIC_RATE
    if malignant or mimic:
        strength = rng.uniform(0.1, 1.0) if malignant else rng.uniform(0.1, 0.6)
        scale = rng.uniform(0.07, 0.28) if malignant else rng.uniform(0.06, 0.2)
        cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
        ang = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        rr = scale * min(w, h) * 1.3 * (1 + 0.25 * rng.uniform(-1, 1, 14))
        region = Image.new("L", size, 0)
        ImageDraw.Draw(region).polygon(
            list(zip((cx + rr * np.cos(ang) * 1.3).tolist(), (cy + rr * np.sin(ang)).tolist(), strict=True)), fill=255
        )
        region_mask = np.asarray(region) > 0
        area = float(region_mask.sum())
        r_les = 2.1 * s
        n_les = int(area / (np.pi * r_les * r_les) * 0.9 * strength) + 3
        les = Image.new("L", size, 0)
        _blobs(ImageDraw.Draw(les), rng, _points_in(region_mask, rng, n_les), r_les, 0.6, 0.35, 255)
        les_a = np.asarray(les.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float32)[..., None] / 255.0
        tint = np.asarray(region.filter(ImageFilter.GaussianBlur(3)), dtype=np.float32)[..., None] / 255.0
        img = img * (1 - 0.25 * strength * tint) + (hema * 1.1) * (0.25 * strength * tint)
        nuc_a = np.asarray(nuclei.filter(ImageFilter.GaussianBlur(0.5)), dtype=np.float32)[..., None] / 255.0
        img = img * (1 - nuc_a) + hema * nuc_a
        dark = hema * (0.75 - 0.25 * strength)
        img = img * (1 - les_a * (0.5 + 0.45 * strength)) + dark * les_a * (0.5 + 0.45 * strength)
        if malignant:
            lesion = region_mask
    else:
        nuc_a = np.asarray(nuclei.filter(ImageFilter.GaussianBlur(0.5)), dtype=np.float32)[..., None] / 255.0
        img = img * (1 - nuc_a) + hema * nuc_a
    img = img + rng.normal(0, 5, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), lesion


def generate_demo(
    root: str | os.PathLike,
    seed: int = 0,
    patients_per_subtype: int = 3,
    images_per_magnification: int = 8,
    size: tuple[int, int] = DEFAULT_SIZE,
) -> Path:
    """Write the synthetic demo dataset below ``root``.

    Args:
        root: Output folder (``root/BreaKHis_v1/...``, ``root/masks/...``, ``root/demo.json``).
        seed: Random seed; the same arguments give byte-identical files.
        patients_per_subtype: Patient folders per subtype (at least 1).
        images_per_magnification: Images per malignant patient and magnification (at least 1); benign
            patients get half as many (at least 1).
        size: ``(width, height)`` of the images.

    Returns:
        ``root / "BreaKHis_v1"``, a valid ``--data.root``.

    Raises:
        BreakHisError: For a bad argument.
    """
    if patients_per_subtype < 1:
        raise BreakHisError(f"patients_per_subtype {patients_per_subtype}: must be at least 1")
    if images_per_magnification < 1:
        raise BreakHisError(f"images_per_magnification {images_per_magnification}: must be at least 1")
    if len(size) != 2 or min(size) < 16:
        raise BreakHisError(f"size {size}: width and height must be at least 16 pixels, e.g. 160x105")
    root = Path(root)
    size = (int(size[0]), int(size[1]))
    ids = _patient_ids(seed, patients_per_subtype)
    made_dirs: set[Path] = set()
    for s, code in enumerate(SUBTYPE_CODES):
        for p, pid in enumerate(ids[code]):
            prng = np.random.default_rng([seed, s, p, 7])
            eosin = np.array([226.0, 150.0, 196.0]) + prng.normal(0, 22, 3)
            hema = np.array([84.0, 48.0, 140.0]) + prng.normal(0, 18, 3)
            stain = np.clip(np.stack([eosin, hema]), 0, 255).astype(np.float32)
            style = (float(prng.uniform(0.6, 1.6)), float(prng.uniform(0.8, 1.25)), int(prng.integers(3, 10)))
            n_images = (
                images_per_magnification
                if SUBTYPE_LABELS[code] == "malignant"
                else benign_images(images_per_magnification)
            )
            for m, mag in enumerate(MAGNIFICATIONS):
                for i in range(n_images):
                    rng = np.random.default_rng([seed, s, p, m, i])
                    img, lesion = render_image(rng, size, code, mag, stain, style)
                    rel = image_path(code, pid, mag, i + 1)
                    out = root / rel
                    if out.parent not in made_dirs:
                        out.parent.mkdir(parents=True, exist_ok=True)
                        made_dirs.add(out.parent)
                    Image.fromarray(img, "RGB").save(out, compress_level=1)
                    if lesion is not None:
                        mout = root / "masks" / rel
                        if mout.parent not in made_dirs:
                            mout.parent.mkdir(parents=True, exist_ok=True)
                            made_dirs.add(mout.parent)
                        Image.fromarray(lesion.astype(np.uint8) * 255, "L").save(mout, compress_level=1)
    meta = {
        "generator": "breakhis_lit.data.demo.generate_demo",
        "seed": seed,
        "patients_per_subtype": patients_per_subtype,
        "images_per_magnification": images_per_magnification,
        "size": list(size),
    }
    (root / DEMO_MARKER).write_text(json.dumps(meta, indent=2) + "\n")
    return root / "BreaKHis_v1"


def mask_path(root: str | os.PathLike, image_path: str | os.PathLike) -> Path:
    """Return the lesion mask file of a demo image (only malignant images have one: check ``exists()``).

    Args:
        root: The demo root given to :func:`generate_demo` (or its ``BreaKHis_v1`` subfolder).
        image_path: The image as an official-form relative path (``BreaKHis_v1/histology_slides/...``), or as a
            file path below the demo root.

    Returns:
        ``root / "masks" / <relative path>``; a binary PNG (0/255) of the image's size.
    """
    base = Path(root)
    if base.name == "BreaKHis_v1" and not (base / "masks").is_dir():
        base = base.parent
    p = Path(image_path)
    text = p.as_posix()
    if not p.is_absolute() and text.startswith("BreaKHis_v1/"):
        rel = text
    else:
        marker = "/" + OFFICIAL_PREFIX
        idx = text.find(marker)
        if idx < 0:
            raise BreakHisError(f"{image_path}: not a BreakHis image path below {root}; pass a path under BreaKHis_v1/")
        rel = text[idx + 1 :]
    return base / "masks" / rel


def ensure_demo(root: Path, seed: int = 0) -> None:
    """Generate the demo data at ``root`` (once, atomically, under a file lock) when ``root`` is absent or empty.

    ``root`` may be the demo folder or its ``BreaKHis_v1``; parallel processes (DDP ranks, tests) generate once.
    """
    from filelock import FileLock

    if root.is_dir() and any(root.iterdir()):
        return
    base = root.parent if root.name == "BreaKHis_v1" else root
    base.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base.parent / f".{base.name}.demo.lock")):
        if root.is_dir() and any(root.iterdir()):
            return
        tmp = base.parent / f".{base.name}.demo-tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"generating the demo data ({demo_image_count()} synthetic images) in {base}", file=sys.stderr)
        generate_demo(tmp, seed=seed)
        try:
            if root.is_dir() and root != base:
                root.rmdir()  # empty
            if not base.exists() or (base.is_dir() and not any(base.iterdir())):
                if base.exists():
                    base.rmdir()
                os.replace(tmp, base)
            else:
                for name in ("BreaKHis_v1", "masks", DEMO_MARKER):
                    if not (base / name).exists():
                        os.replace(tmp / name, base / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
