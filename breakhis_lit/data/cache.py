"""Decode-once image cache: every image decoded and resized once, stored as one uint8 ``.npy`` array.

The cache file name is a hash of the file list (relative path, size, mtime), the preprocessing parameters
and :data:`CACHE_VERSION`, so a changed file, image size or preprocessing version gives a new cache instead of
a misread one. Files are written to a temporary name and moved into place with :func:`os.replace`; the
metadata ``.json`` is written last and marks the cache as complete, so a build killed half-way is never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from breakhis_lit.errors import BreakHisError
from breakhis_lit.io import atomic_write

log = logging.getLogger(__name__)

#: Bump when decoding or resizing changes: older caches are then rebuilt, never misread.
CACHE_VERSION = 1
#: Resize mode: ``squash`` resizes to ``size x size`` ignoring the aspect ratio (as the paper).
RESIZE_MODES = ("squash",)
_SERIAL_BELOW_BYTES = 16 << 20
"""Decode less PNG data than this in-process: starting a pool (~0.2 s) costs more than it saves (one core
decodes about 100 MB of BreakHis PNGs a second)."""
_RESULT_TIMEOUT_S = 300  # a worker that produces nothing for this long is presumed stuck: finish in-process


def default_cache_dir() -> Path:
    """Return ``$BREAKHIS_CACHE`` or ``~/.cache/breakhis_lit``."""
    env = os.environ.get("BREAKHIS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "breakhis_lit"


class BadImageError(Exception):
    """An image file that cannot be decoded; ``reason`` is short (``zero bytes``, ``truncated``...)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path} ({reason})")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Pickled back from decoding workers: rebuild from both fields, not from the message.
        return (type(self), (self.path, self.reason))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F...) to 8-bit RGB."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Drop alpha by compositing on white (background of a slide scan).
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(path: str | os.PathLike, size: int | None = 224) -> np.ndarray:
    """Decode an image file to a uint8 ``[3, H, W]`` array, resized (squashed) to ``size x size``.

    Args:
        path: Image file (any format PIL reads; grayscale, palette, RGBA and 16-bit are converted to RGB).
        size: Output side in pixels; ``None`` keeps the original size.

    Returns:
        The uint8 array, channels first.

    Raises:
        BadImageError: If the file cannot be decoded (zero bytes, truncated, not an image...).
    """
    p = str(path)
    try:
        if os.path.getsize(p) == 0:
            raise BadImageError(p, "zero bytes")
        with Image.open(p) as img:
            if size is not None:
                img.draft("RGB", (size, size))  # JPEG: decode at reduced scale when possible
            img.load()
            rgb = _to_rgb(img)
            if size is not None and rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(rgb, dtype=np.uint8)
    except BadImageError:
        raise
    except FileNotFoundError:
        raise BadImageError(p, "file not found") from None
    except UnidentifiedImageError:
        raise BadImageError(p, "not a readable image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        text = str(err).lower()
        reason = "truncated" if "truncated" in text or "eof" in text or isinstance(err, EOFError) else f"corrupt: {err}"
        raise BadImageError(p, reason) from None
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _decode_task(args: tuple[str, int | None]) -> np.ndarray | BadImageError:
    try:
        return decode_image(*args)
    except BadImageError as err:
        return err


def _decode_chunk(tasks: list[tuple[str, int | None]]) -> list[np.ndarray | BadImageError]:
    return [_decode_task(t) for t in tasks]


@dataclass
class DecodeResult:
    """Output of :func:`decode_images`.

    Attributes:
        images: uint8 ``[N_ok, 3, size, size]`` array of the readable images, in input order.
        ok: Input indexes of the rows of ``images``.
        bad: ``(path, reason)`` of every unreadable file, in input order.
    """

    images: np.ndarray
    ok: list[int]
    bad: list[tuple[str, str]] = field(default_factory=list)


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork is fast and needs no re-import; the workers only run PIL/numpy. Forking a process that has initialised
    # CUDA is unsafe, so then forkserver: a clean server imports this (light) module once and forks the workers.
    if sys.platform.startswith("linux"):
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])
            return ctx
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _small(paths: Sequence[str | os.PathLike]) -> bool:
    """Whether the files hold less than ``_SERIAL_BELOW_BYTES`` (stops counting once past it)."""
    total = 0
    for path in paths:
        try:
            total += os.stat(path).st_size
        except OSError:
            continue  # reported by the decoding
        if total >= _SERIAL_BELOW_BYTES:
            return False
    return True


def decode_images(
    paths: Sequence[str | os.PathLike],
    size: int = 224,
    *,
    num_workers: int | None = None,
    progress: bool = True,
    desc: str = "decoding images",
) -> DecodeResult:
    """Decode and resize images on all CPU cores (pure: reads the files, writes nothing).

    Args:
        paths: Image files.
        size: Output side in pixels.
        num_workers: Processes (default: all CPU cores available to this process).
        progress: Show a tqdm progress bar.
        desc: Progress bar label.

    Returns:
        A :class:`DecodeResult`.
    """
    n = len(paths)
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    ok: list[int] = []
    bad: list[tuple[str, str]] = []
    if num_workers is None:
        num_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    tasks = [(str(p), size) for p in paths]
    bar = tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False, dynamic_ncols=True)

    def record(i: int, res: np.ndarray | BadImageError) -> None:
        if isinstance(res, BadImageError):
            bad.append((res.path, res.reason))
        else:
            out[len(ok)] = res
            ok.append(i)
        bar.update(1)

    done = 0
    try:
        if num_workers > 1 and n > 1 and not _small(paths):
            size_ = max(1, min(32, n // (num_workers * 8)))
            chunks = [tasks[i : i + size_] for i in range(0, n, size_)]
            with _pool_context().Pool(min(num_workers, len(chunks))) as pool:
                results = pool.imap(_decode_chunk, chunks)  # chunksize 1: its iterator supports a timeout
                try:
                    for _ in range(len(chunks)):
                        for res in results.next(timeout=_RESULT_TIMEOUT_S):
                            record(done, res)
                            done += 1
                except multiprocessing.TimeoutError:
                    log.warning(
                        "image decoding workers stalled for %d s; decoding the remaining %d images in-process",
                        _RESULT_TIMEOUT_S,
                        n - done,
                    )
                    pool.terminate()
        for i in range(done, n):
            record(i, _decode_task(tasks[i]))
    finally:
        bar.close()
    images = out if len(ok) == n else out[: len(ok)].copy()
    return DecodeResult(images=images, ok=ok, bad=bad)


def bad_images_message(bad: Sequence[tuple[str, str]], option: str = "--data.on_bad_image skip") -> str:
    """Format the one-line error naming every unreadable image."""
    listed = ", ".join(f"{p} ({r})" for p, r in bad)
    return f"{len(bad)} unreadable image(s): {listed}; fix or remove them, or pass {option}"


def cache_key(
    files: Sequence[tuple[str, str | os.PathLike]], size: int, resize: str = "squash", extra: str = ""
) -> str:
    """Hash a file list and the preprocessing parameters into a cache key.

    Args:
        files: ``(relative path, file path on disk)`` pairs; the relative path, size and mtime enter the key.
        size: Output side in pixels.
        resize: Resize mode.
        extra: Anything else that identifies the source (e.g. an absolute root for arbitrary folders).

    Returns:
        A hex digest (24 characters).
    """
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, "size": size, "resize": resize, "extra": extra}).encode())
    for rel, path in files:
        try:
            st = os.stat(path)
            h.update(f"\n{rel}\t{st.st_size}\t{st.st_mtime_ns}".encode())
        except FileNotFoundError:
            h.update(f"\n{rel}\tmissing".encode())
    return h.hexdigest()[:24]


@dataclass
class CachedImages:
    """A loaded cache.

    Attributes:
        images: uint8 ``[N_ok, 3, size, size]`` array.
        paths: Relative paths of the rows of ``images``.
        bad: ``(relative path, reason)`` of unreadable files (not in ``images``).
        key: The cache key.
        built: Whether this call decoded the images (``False``: loaded from disk).
    """

    images: np.ndarray
    paths: list[str]
    bad: list[tuple[str, str]]
    key: str
    built: bool


def cache_files(cache_dir: Path, key: str) -> tuple[Path, Path]:
    """Return the ``(array .npy, metadata .json)`` paths of a cache key."""
    return cache_dir / f"breakhis-{key}.npy", cache_dir / f"breakhis-{key}.json"


def load_cache(cache_dir: Path, key: str, size: int, n_files: int) -> CachedImages | None:
    """Load a complete cache, or return ``None`` when absent, incomplete or from another version."""
    npy, meta_path = cache_files(cache_dir, key)
    try:
        meta = json.loads(meta_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if (
        meta.get("version") != CACHE_VERSION
        or meta.get("key") != key
        or meta.get("size") != size
        or len(meta.get("paths", [])) + len(meta.get("bad", [])) != n_files
    ):
        log.info("cache %s is stale or from another version: rebuilding", meta_path)
        return None
    try:
        images = np.load(npy, allow_pickle=False)
    except (FileNotFoundError, ValueError, OSError):
        return None
    if images.shape != (len(meta["paths"]), 3, size, size) or images.dtype != np.uint8:
        log.info("cache %s has an unexpected shape %s: rebuilding", npy, images.shape)
        return None
    return CachedImages(images, list(meta["paths"]), [tuple(b) for b in meta["bad"]], key, built=False)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        from filelock import FileLock
    except ImportError:  # pragma: no cover - filelock comes with torch
        yield
        return
    with FileLock(str(path)):
        yield


def load_or_build(
    files: Sequence[tuple[str, str | os.PathLike]],
    size: int = 224,
    cache_dir: str | os.PathLike | None = None,
    *,
    extra_key: str = "",
    num_workers: int | None = None,
    progress: bool = True,
    build: bool = True,
    lock: bool = True,
) -> CachedImages:
    """Load the cache of a file list, decoding and persisting it first if needed.

    Unreadable files never stop the build: they are recorded in the cache (``bad``) and the caller decides
    (error or skip).

    Args:
        files: ``(relative path, file path on disk)`` pairs, in the order the rows should have.
        size: Output side in pixels.
        cache_dir: Cache folder (default :func:`default_cache_dir`).
        extra_key: Extra text entering the cache key.
        num_workers: Decoding processes (default: all cores).
        progress: Show a progress bar while decoding.
        build: If ``False``, never decode: raise when the cache is absent (DDP non-zero ranks after the barrier).
        lock: Hold a file lock while checking/building (several processes on one machine).

    Returns:
        The :class:`CachedImages`.

    Raises:
        BreakHisError: If the cache folder cannot be written, or ``build`` is ``False`` and no cache exists.
    """
    if size < 1:
        raise BreakHisError(f"image_size {size}: must be a positive number of pixels; pass e.g. --data.image_size 224")
    cdir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        cdir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BreakHisError(
            f"{cdir}: cannot create the cache folder ({err}); pass --data.cache_dir or set BREAKHIS_CACHE"
        ) from None
    key = cache_key(files, size, extra=extra_key)
    ctx = _file_lock(cdir / f"breakhis-{key}.lock") if lock else contextlib.nullcontext()
    with ctx:
        cached = load_cache(cdir, key, size, len(files))
        if cached is not None:
            return cached
        if not build:
            raise BreakHisError(
                f"{cdir}: cache {key} missing after rank zero built it; use a cache_dir shared by all ranks"
            )
        result = decode_images([p for _, p in files], size, num_workers=num_workers, progress=progress)
        paths = [files[i][0] for i in result.ok]
        rel_of = {str(p): rel for rel, p in files}
        bad = [(rel_of.get(p, p), reason) for p, reason in result.bad]
        npy, meta_path = cache_files(cdir, key)
        meta = {"version": CACHE_VERSION, "key": key, "size": size, "resize": "squash", "paths": paths, "bad": bad}
        try:
            atomic_write(npy, lambda f: np.save(f, result.images, allow_pickle=False))
            atomic_write(meta_path, lambda f: f.write(json.dumps(meta).encode()))
        except OSError as err:
            log.warning("could not write the image cache to %s (%s); continuing without it", cdir, err)
        return CachedImages(result.images, paths, bad, key, built=True)
