"""Decode-once image cache: every image decoded and resized once, stored as one uint8 ``.npy`` array.

The cache file name is a hash of the file list (relative path, size, mtime), the preprocessing parameters
(the stain normalisation target included) and :data:`CACHE_VERSION`, so a changed file, image size, stain target
or preprocessing version gives a new cache instead of a misread one. Files are written to a temporary name and
moved into place with :func:`os.replace`; the metadata ``.json`` is written last and marks the cache as complete,
so a build killed half-way is never used.
The metadata holds the CRC-32 of the array's bytes, verified on every load: a cache damaged after it was written
(zeroed blocks, bit rot) is rebuilt, never used. It also holds a content digest of every source file, taken from
the bytes read for decoding, so byte-identical files are known without reading the tree again.
Files whose content cannot be decoded are remembered as bad; files that could not be read at all (permission
denied, not found, I/O errors) are not: they are tried again on every load, and the cache is rebuilt as soon as
they can be read.

A stain-normalised cache (``stain_target`` of :func:`load_or_build`) holds the same rows as the raw cache of the
same files, every image normalised once to the target (:mod:`breakhis_lit.stain`), and is built from that raw
cache: normalised and raw images never share a file, and runs without normalisation keep using the raw one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import multiprocessing
import os
import re
import struct
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from breakhis_lit.errors import BreakHisError
from breakhis_lit.files import atomic_write

if TYPE_CHECKING:
    from breakhis_lit.stain.base import StainTarget

log = logging.getLogger(__name__)

#: Bump when decoding or resizing changes: older caches are then rebuilt, never misread.
CACHE_VERSION = 4
_SERIAL_BELOW_BYTES = 16 << 20
"""Decode less PNG data than this in-process: starting a pool (~0.2 s) costs more than it saves (one core
decodes about 100 MB of BreakHis PNGs a second)."""
_RESULT_TIMEOUT_S = 300  # a worker that produces nothing for this long is presumed stuck: finish in-process


def default_cache_dir() -> Path:
    """Return ``$BREAKHIS_CACHE`` or ``~/.cache/breakhis_lit``."""
    env = os.environ.get("BREAKHIS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "breakhis_lit"


class BadImageError(Exception):
    """An image file that cannot be decoded; ``reason`` is short (``zero bytes``, ``truncated``...).

    ``transient`` marks failures of reading rather than of the content (permission denied, file not found, I/O
    errors): they may be gone on the next try, so they are never remembered by the cache.
    """

    def __init__(self, path: str, reason: str, transient: bool = False) -> None:
        super().__init__(f"{path} ({reason})")
        self.path = path
        self.reason = reason
        self.transient = transient

    def __reduce__(self) -> tuple[type, tuple[str, str, bool]]:
        # Pickled back from decoding workers: rebuild from the fields, not from the message.
        return (type(self), (self.path, self.reason, self.transient))


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


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """The pixel size an image file's header declares, read without Pillow's decompression-bomb check."""
    try:
        fp = io.BytesIO(data)
        for fmt in Image.ID:
            factory, accept = Image.OPEN[fmt]
            if accept is not None and accept(data[:16]) is not True:
                continue
            fp.seek(0)
            try:
                return tuple(factory(fp, "").size)
            except (SyntaxError, IndexError, TypeError, ValueError, struct.error):
                continue
    except Exception:  # the size only words a message: any failure leaves it out
        return None
    return None


def _too_large(data: bytes, err: Exception) -> str:
    size = _declared_size(data)
    if size is not None:
        return f"too large: {size[0]}×{size[1]} pixels"
    pixels = re.search(r"\((\d+) pixels\)", str(err))
    return f"too large: {pixels.group(1)} pixels" if pixels else "too large"


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def content_digest(data: bytes) -> str:
    """The digest that identifies byte-identical files (SHA-256, first 128 bits, hex)."""
    return hashlib.sha256(data).hexdigest()[:32]


def decode_file(path: str | os.PathLike, size: int | None = 224) -> tuple[np.ndarray, str]:
    """Decode an image file to a uint8 ``[3, H, W]`` array, resized (squashed) to ``size x size``, and its digest.

    Args:
        path: Image file (any format PIL reads; grayscale, palette, RGBA and 16-bit are converted to RGB).
        size: Output side in pixels; ``None`` keeps the original size.

    Returns:
        The array, channels first, and the :func:`content_digest` of the bytes the decoder read (read once).

    Raises:
        BadImageError: If the file cannot be decoded (zero bytes, truncated, not an image, more pixels than
            Pillow's decompression-bomb limit ``PIL.Image.MAX_IMAGE_PIXELS`` allows...) or read (permission
            denied, not found, I/O error: ``transient``).
    """
    p = str(path)
    data = b""
    try:
        data = _read_file(p)
        if not data:
            raise BadImageError(p, "zero bytes")
        digest = content_digest(data)
        with Image.open(io.BytesIO(data)) as img:
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
        raise BadImageError(p, "file not found", transient=True) from None
    except PermissionError:
        raise BadImageError(p, "permission denied", transient=True) from None
    except UnidentifiedImageError:
        raise BadImageError(p, "not a readable image") from None
    except Image.DecompressionBombError as err:
        raise BadImageError(p, _too_large(data, err)) from None
    except OSError as err:
        if err.errno is not None:  # the operating system failed to read the file; Pillow's errors have none
            raise BadImageError(p, f"read error: {err.strerror or err}", transient=True) from None
        raise BadImageError(p, _content_error(err)) from None
    except (SyntaxError, ValueError, EOFError) as err:
        raise BadImageError(p, _content_error(err)) from None
    return np.ascontiguousarray(arr.transpose(2, 0, 1)), digest


def decode_image(path: str | os.PathLike, size: int | None = 224) -> np.ndarray:
    """The array of :func:`decode_file`, without the digest."""
    return decode_file(path, size)[0]


def _content_error(err: Exception) -> str:
    """The reason for a file whose content Pillow cannot decode."""
    text = str(err).lower()
    return "truncated" if "truncated" in text or "eof" in text or isinstance(err, EOFError) else f"corrupt: {err}"


def _decode_task(args: tuple[str, int | None]) -> tuple[np.ndarray, str] | BadImageError:
    try:
        return decode_file(*args)
    except BadImageError as err:
        return err


def _decode_chunk(tasks: list[tuple[str, int | None]]) -> list[tuple[np.ndarray, str] | BadImageError]:
    return [_decode_task(t) for t in tasks]


@dataclass
class DecodeResult:
    """Output of :func:`decode_images`.

    Attributes:
        images: uint8 ``[N_ok, 3, size, size]`` array of the readable images, in input order.
        ok: Input indexes of the rows of ``images``.
        bad: ``(path, reason)`` of every unreadable file, in input order.
        transient: Paths of ``bad`` whose failure is one of reading, not of the content (permission denied,
            file not found, I/O error): worth another try later.
        digests: :func:`content_digest` of each row's file (byte-identical files have equal digests).
    """

    images: np.ndarray
    ok: list[int]
    bad: list[tuple[str, str]] = field(default_factory=list)
    transient: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)


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
    transient: list[str] = []
    digests: list[str] = []
    if num_workers is None:
        num_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    tasks = [(str(p), size) for p in paths]
    bar = tqdm(total=n, desc=desc, unit="img", disable=not progress, leave=False, dynamic_ncols=True)

    def record(i: int, res: tuple[np.ndarray, str] | BadImageError) -> None:
        if isinstance(res, BadImageError):
            bad.append((res.path, res.reason))
            if res.transient:
                transient.append(res.path)
        else:
            out[len(ok)] = res[0]
            digests.append(res[1])
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
    return DecodeResult(images=images, ok=ok, bad=bad, transient=transient, digests=digests)


def bad_images_message(bad: Sequence[tuple[str, str]], option: str = "--data.on_bad_image skip") -> str:
    """Format the one-line error naming every unreadable image."""
    listed = ", ".join(f"{p} ({r})" for p, r in bad)
    return f"{len(bad)} unreadable image(s): {listed}; fix or remove them, or pass {option}"


def cache_key(
    files: Sequence[tuple[str, str | os.PathLike]],
    size: int,
    extra: str = "",
    stain: str = "",
) -> str:
    """Hash a file list and the preprocessing parameters into a cache key.

    Args:
        files: ``(relative path, file path on disk)`` pairs; the relative path, size and mtime enter the key.
        size: Output side in pixels (of squashed images: the key names ``"resize": "squash"``).
        extra: Anything else that identifies the source (e.g. an absolute root for arbitrary folders).
        stain: The stain target's JSON (:meth:`~breakhis_lit.stain.base.StainTarget.to_json`) of a normalised
            cache; ``""`` for raw images (their keys are those of caches made before normalisation existed).

    Returns:
        A hex digest (24 characters).
    """
    h = hashlib.sha256()
    header = {"version": CACHE_VERSION, "size": size, "resize": "squash", "extra": extra}
    if stain:
        header["stain"] = stain
    h.update(json.dumps(header).encode())
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
        built: Whether this call decoded (or normalised) the images (``False``: loaded from disk).
        digests: :func:`content_digest` of the file of each row (equal for byte-identical files).
        unread: The ``(relative path, reason)`` of ``bad`` that could not be read at all (tried again on every
            load), as opposed to those whose content is not an image.
    """

    images: np.ndarray
    paths: list[str]
    bad: list[tuple[str, str]]
    key: str
    built: bool
    digests: list[str] = field(default_factory=list)
    unread: list[tuple[str, str]] = field(default_factory=list)


def find_duplicates(digests: dict[str, str]) -> list[list[str]]:
    """Group paths whose files are byte-identical.

    Args:
        digests: Path -> :func:`content_digest` of its file.

    Returns:
        Every set of two or more paths sharing a digest, each sorted, sorted by first path.
    """
    by_digest: dict[str, list[str]] = {}
    for path, digest in digests.items():
        by_digest.setdefault(digest, []).append(path)
    return sorted(sorted(paths) for paths in by_digest.values() if len(paths) > 1)


def cache_files(cache_dir: Path, key: str) -> tuple[Path, Path]:
    """Return the ``(array .npy, metadata .json)`` paths of a cache key."""
    return cache_dir / f"breakhis-{key}.npy", cache_dir / f"breakhis-{key}.json"


def _meta_problem(meta: object) -> str | None:
    """Why a parsed metadata object of the current version is unusable, or ``None`` when it is sound."""
    if not isinstance(meta, dict):
        return f"a JSON {type(meta).__name__}, not an object"
    paths = meta.get("paths")
    if not all(isinstance(meta.get(name), int) for name in ("size", "crc32")) or not isinstance(meta.get("key"), str):
        return "no key, size or checksum"
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        return "no list of paths"
    digests = meta.get("digests")
    if not isinstance(digests, list) or len(digests) != len(paths) or not all(isinstance(d, str) for d in digests):
        return "no content digest for every path"
    for name in ("bad", "retry"):
        pairs = meta.get(name)
        if not isinstance(pairs, list) or not all(
            isinstance(b, list) and len(b) == 2 and all(isinstance(x, str) for x in b) for b in pairs
        ):
            return f"no list of {'unreadable' if name == 'bad' else 'unread'} files"
    return None


def _read_meta(meta_path: Path) -> dict | None:
    """Read a cache's metadata; ``None`` (after a warning unless it is simply absent) when it is unusable."""
    try:
        raw = meta_path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        log.warning("cannot read the cache metadata %s (%s); rebuilding the cache", meta_path, err.strerror or err)
        return None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        log.warning("cache metadata %s is damaged (not JSON); rebuilding the cache", meta_path)
        return None
    if isinstance(meta, dict) and meta.get("version") != CACHE_VERSION:
        log.info("cache %s is from another version: rebuilding", meta_path)
        return None
    problem = _meta_problem(meta)
    if problem is not None:
        log.warning("cache metadata %s is damaged (%s); rebuilding the cache", meta_path, problem)
        return None
    return meta


def load_cache(
    cache_dir: Path, key: str, size: int, files: Sequence[tuple[str, str | os.PathLike]]
) -> CachedImages | None:
    """Load a complete cache, or return ``None`` when absent, incomplete, damaged or from another version.

    Files that could not be read when the cache was built (permission denied, not found, I/O error) are tried
    again: still unreadable, they are reported in ``bad``; readable now, the cache is rebuilt (``None``).
    """
    npy, meta_path = cache_files(cache_dir, key)
    meta = _read_meta(meta_path)
    if meta is None:
        return None
    retry = [tuple(b) for b in meta["retry"]]
    n_listed = len(meta["paths"]) + len(meta["bad"]) + len(retry)
    if meta["key"] != key or meta["size"] != size or n_listed != len(files):
        log.info("cache %s is stale: rebuilding", meta_path)
        return None
    still_bad = _retry_unread(files, retry, size)
    if still_bad is None:
        log.info("cache %s: files unreadable when it was built can be read now: rebuilding", meta_path)
        return None
    try:
        images = _read_checked(npy, (len(meta["paths"]), 3, size, size), meta["crc32"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("image cache %s is damaged (%s); rebuilding it", npy, err)
        return None
    bad = [tuple(b) for b in meta["bad"]] + still_bad
    return CachedImages(
        images, list(meta["paths"]), bad, key, built=False, digests=list(meta["digests"]), unread=still_bad
    )


_CHUNK_BYTES = 1 << 22  # checksummed while still in the CPU cache, right after it is read


def array_crc32(images: np.ndarray) -> int:
    """CRC-32 of an array's bytes (C order), computed in chunks without a copy."""
    view = memoryview(np.ascontiguousarray(images).reshape(-1)).cast("B")
    crc = 0
    for start in range(0, len(view), _CHUNK_BYTES):
        crc = zlib.crc32(view[start : start + _CHUNK_BYTES], crc)
    return crc


def _read_checked(npy: Path, shape: tuple[int, ...], crc32: int) -> np.ndarray:
    """Read a uint8 ``.npy`` array written by :func:`np.save`, verifying its shape and the CRC-32 of its bytes.

    The bytes are checksummed chunk by chunk as they are read, so a corrupted file (zeroed blocks, bit rot, a
    file of the right size with the wrong content) is caught at the cost of about one extra pass in the CPU
    cache, not of a second read.

    Raises:
        FileNotFoundError: If the file is absent.
        ValueError: If the header, the size or the checksum does not match.
    """
    with open(npy, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        file_shape, fortran, dtype = read_header(f)
        if tuple(file_shape) != shape or dtype != np.uint8 or fortran:
            raise ValueError(f"holds a {dtype} array of shape {tuple(file_shape)}, expected uint8 {shape}")
        images = np.empty(shape, dtype=np.uint8)
        view = memoryview(images.reshape(-1))
        crc, done = 0, 0
        while done < len(view):
            n = f.readinto(view[done : done + _CHUNK_BYTES])
            if not n:
                raise ValueError(f"truncated: {done} of {len(view)} array bytes")
            crc = zlib.crc32(view[done : done + n], crc)
            done += n
        if f.read(1):
            raise ValueError("longer than its array")
    if crc != crc32:
        raise ValueError("checksum mismatch: its content changed after it was written")
    return images


def _retry_unread(
    files: Sequence[tuple[str, str | os.PathLike]], retry: list[tuple[str, str]], size: int
) -> list[tuple[str, str]] | None:
    """Try again the files a build could not read.

    Returns:
        Their current ``(rel, reason)``, or ``None`` once any is readable or shows a content problem (the cache
        must then be rebuilt).
    """
    if not retry:
        return []
    path_of = {rel: path for rel, path in files}
    still: list[tuple[str, str]] = []
    for rel, _ in retry:
        if rel not in path_of:
            return None
        try:
            decode_file(path_of[rel], size)
        except BadImageError as err:
            if not err.transient:
                return None
            still.append((rel, err.reason))
            continue
        return None
    return still


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[OSError | None]:
    """Hold a file lock on ``path``; yields ``None``, or (unlocked) the error when the lock cannot be created."""
    try:
        from filelock import FileLock
    except ImportError:  # pragma: no cover - filelock comes with torch
        yield None
        return
    lock = FileLock(str(path))
    try:
        lock.acquire()
    except OSError as err:  # a read-only folder or file system
        yield err
        return
    try:
        yield None
    finally:
        lock.release()


def load_or_build(
    files: Sequence[tuple[str, str | os.PathLike]],
    size: int = 224,
    cache_dir: str | os.PathLike | None = None,
    *,
    extra_key: str = "",
    stain_target: StainTarget | None = None,
    source: CachedImages | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    build: bool = True,
    lock: bool = True,
) -> CachedImages:
    """Load the cache of a file list, decoding and persisting it first if needed.

    Unreadable files never stop the build: they are recorded in the cache (``bad``) and the caller decides
    (error or skip). A cache folder that cannot be written (read-only) is still read; without a usable cache
    the images are decoded and used without being stored (one warning).

    Args:
        files: ``(relative path, file path on disk)`` pairs, in the order the rows should have.
        size: Output side in pixels.
        cache_dir: Cache folder (default :func:`default_cache_dir`).
        extra_key: Extra text entering the cache key.
        stain_target: Normalise every image to this stain target (its JSON enters the key); ``None`` or a
            ``none`` target: the raw images.
        source: The raw cache of the same files and size, already loaded (a normalised cache is built from
            it); loaded or built here when needed and not given.
        num_workers: Decoding processes (default: all cores).
        progress: Show a progress bar while decoding or normalising.
        build: If ``False``, never decode: raise when the cache is absent (DDP non-zero ranks after the barrier);
            ignored when the cache folder is not writable (every rank decodes then).
        lock: Hold a file lock while checking/building (several processes on one machine).

    Returns:
        The :class:`CachedImages`.

    Raises:
        BreakHisError: If the cache folder cannot be created, or ``build`` is ``False`` and no cache exists.
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
    normalised = stain_target is not None and stain_target.method != "none"
    key = cache_key(files, size, extra=extra_key, stain=stain_target.to_json() if normalised else "")
    ctx = _file_lock(cdir / f"breakhis-{key}.lock") if lock else contextlib.nullcontext()
    with ctx as unwritable:
        cached = load_cache(cdir, key, size, files)
        if cached is not None:
            return cached
        if unwritable is not None:
            log.warning(
                "cache folder %s is not writable (%s); continuing without the cache, so images are decoded on "
                "every run; pass --data.cache_dir or set BREAKHIS_CACHE to a writable folder",
                cdir,
                unwritable.strerror or unwritable,
            )
        elif not build:
            raise BreakHisError(
                f"{cdir}: cache {key} missing after rank zero built it; use a cache_dir shared by all ranks"
            )
        if normalised:
            raw = source
            if raw is None:
                raw = load_or_build(
                    files, size, cdir, extra_key=extra_key, num_workers=num_workers, progress=progress, lock=lock
                )
            images = normalize_images(raw.images, stain_target, progress=progress)
            unread = list(raw.unread)
            content = [b for b in raw.bad if b not in unread]
            if unwritable is None:
                _write_cache(cdir, key, size, raw.paths, content, unread, images, raw.digests, stain_target)
            return CachedImages(images, list(raw.paths), list(raw.bad), key, True, list(raw.digests), unread)
        result = decode_images([p for _, p in files], size, num_workers=num_workers, progress=progress)
        paths = [files[i][0] for i in result.ok]
        rel_of = {str(p): rel for rel, p in files}
        bad = [(rel_of.get(p, p), reason) for p, reason in result.bad]
        unread = {rel_of.get(p, p) for p in result.transient}
        content = [b for b in bad if b[0] not in unread]
        retry = [b for b in bad if b[0] in unread]
        if unwritable is None:
            _write_cache(cdir, key, size, paths, content, retry, result.images, result.digests)
        return CachedImages(result.images, paths, bad, key, built=True, digests=result.digests, unread=retry)


#: Images normalised at once while a stain-normalised cache is built (about 4 MB of work memory per 224 px image).
NORMALIZE_CHUNK = 64


def normalize_images(images: np.ndarray, target: StainTarget, *, progress: bool = True) -> np.ndarray:
    """Normalise uint8 ``[N, 3, H, W]`` images to a stain target, chunk by chunk on the CPU.

    Args:
        images: The raw images.
        target: The stain target (its ``method`` picks the normaliser).
        progress: Show a progress bar.

    Returns:
        A new uint8 array of the same shape.
    """
    import torch

    from breakhis_lit.stain.registry import get_normalizer

    normalizer = get_normalizer(target.method, batch_size=NORMALIZE_CHUNK)
    out = np.empty_like(images)
    bar = tqdm(total=len(images), desc=f"{target.method} stain normalisation", unit="img", disable=not progress,
               leave=False, dynamic_ncols=True)  # fmt: skip
    try:
        for start in range(0, len(images), NORMALIZE_CHUNK):
            chunk = torch.from_numpy(images[start : start + NORMALIZE_CHUNK])
            out[start : start + len(chunk)] = normalizer.normalize(chunk, target).numpy()
            bar.update(len(chunk))
    finally:
        bar.close()
    return out


def _write_cache(
    cdir: Path,
    key: str,
    size: int,
    paths: list[str],
    bad: list[tuple[str, str]],
    retry: list[tuple[str, str]],
    images: np.ndarray,
    digests: list[str],
    stain_target: StainTarget | None = None,
) -> None:
    """Persist a decoded cache (array first, metadata last); a failure only logs a warning.

    ``bad`` files have undecodable content and are remembered as such; ``retry`` files could not be read
    (permission denied...) and are tried again on every load.
    """
    npy, meta_path = cache_files(cdir, key)
    meta = {
        "version": CACHE_VERSION,
        "key": key,
        "size": size,
        "resize": "squash",
        "paths": paths,
        "bad": bad,
        "retry": retry,
        "digests": digests,
        "crc32": array_crc32(images),
    }
    if stain_target is not None:
        meta["stain_target"] = stain_target.to_dict()
    try:
        atomic_write(npy, lambda f: np.save(f, images, allow_pickle=False))
        atomic_write(meta_path, lambda f: f.write(json.dumps(meta).encode()))
    except OSError as err:
        log.warning("could not write the image cache to %s (%s); continuing without it", cdir, err)
