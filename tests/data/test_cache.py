import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from unprivileged import run_python

from breakhis_lit.data import cache as cache_mod
from breakhis_lit.data.cache import (
    BadImageError,
    bad_images_message,
    cache_files,
    cache_key,
    decode_image,
    decode_images,
    load_or_build,
)


@pytest.fixture(scope="module")
def samples(breakhis_samples):
    return breakhis_samples


def _files(paths):
    return [(p.name, p) for p in paths]


def test_real_samples_through_cache(samples, tmp_path):
    sizes = {Image.open(p).size for p in samples}
    assert (700, 456) in sizes
    assert (700, 460) in sizes
    cached = load_or_build(_files(samples), size=64, cache_dir=tmp_path, num_workers=2, progress=False)
    assert cached.built
    assert cached.bad == []
    assert cached.images.shape == (18, 3, 64, 64)
    assert cached.images.dtype == np.uint8
    assert cached.paths == [p.name for p in samples]
    odd = cached.paths.index("SOB_M_PC-14-12465-100-001.png")
    assert 20 < cached.images[odd].mean() < 250  # a real, resized image, not padding
    # the decoded 700x456 image matches a direct PIL resize
    direct = np.asarray(Image.open(samples[odd]).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR))
    assert np.array_equal(cached.images[odd], direct.transpose(2, 0, 1))


@pytest.mark.parametrize(
    ("mode", "value"),
    [("L", 128), ("RGBA", (10, 20, 30, 255)), ("LA", (50, 255)), ("P", 3), ("I;16", 65535), ("RGB", (1, 2, 3))],
)
def test_modes_converted_to_rgb(tmp_path, mode, value):
    path = tmp_path / f"img_{mode.replace(';', '')}.png"
    Image.new(mode, (30, 20), value).save(path)
    arr = decode_image(path, size=16)
    assert arr.shape == (3, 16, 16)
    assert arr.dtype == np.uint8
    if mode == "L":
        assert (arr == 128).all()
    if mode == "RGBA":
        assert tuple(arr[:, 0, 0]) == (10, 20, 30)
    if mode == "I;16":
        assert (arr == 255).all()


def test_transparent_pixels_composited_on_white(tmp_path):
    path = tmp_path / "t.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(path)
    assert (decode_image(path, size=8) == 255).all()


def _bad_files(tmp_path: Path) -> list[Path]:
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), (200, 100, 50)).save(good)
    zero = tmp_path / "zero.png"
    zero.write_bytes(b"")
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(big)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    text = tmp_path / "text.png"
    text.write_text("not an image")
    return [good, zero, trunc, text, big]


def test_bad_images_named(tmp_path):
    paths = _bad_files(tmp_path)
    result = decode_images(paths, size=8, num_workers=1, progress=False)
    assert result.ok == [0, 4]
    assert result.images.shape == (2, 3, 8, 8)
    reasons = dict(result.bad)
    assert reasons[str(paths[1])] == "zero bytes"
    assert reasons[str(paths[2])] == "truncated"
    assert reasons[str(paths[3])] == "not a readable image"
    msg = bad_images_message([(Path(p).name, r) for p, r in result.bad])
    assert msg.startswith("3 unreadable image(s): zero.png (zero bytes), trunc.png (truncated), text.png")
    assert msg.endswith("fix or remove them, or pass --data.on_bad_image skip")
    with pytest.raises(BadImageError):
        decode_image(paths[1])


def test_bad_images_named_by_decoding_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "_SERIAL_BELOW_BYTES", 0)  # errors pickled back from worker processes
    paths = _bad_files(tmp_path) * 20
    result = decode_images(paths, size=8, num_workers=2, progress=False)
    assert len(result.ok) == 40
    assert len(result.bad) == 60
    assert dict(result.bad)[str(paths[2])] == "truncated"


def test_bad_images_recorded_in_cache(tmp_path):
    (tmp_path / "src").mkdir()
    paths = _bad_files(tmp_path / "src")
    cached = load_or_build(_files(paths), size=8, cache_dir=tmp_path / "c", progress=False)
    assert cached.paths == ["good.png", "big.png"]
    assert [b[0] for b in cached.bad] == ["zero.png", "trunc.png", "text.png"]
    again = load_or_build(_files(paths), size=8, cache_dir=tmp_path / "c", progress=False)
    assert not again.built
    assert again.bad == cached.bad


@pytest.fixture
def pngs(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        p = tmp_path / "src" / f"{i:02d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def _no_decoding(*args, **kwargs):
    raise AssertionError("decoded although the cache exists")


def test_second_load_does_not_decode(pngs, tmp_path, monkeypatch):
    first = load_or_build(_files(pngs), size=16, cache_dir=tmp_path / "c", progress=False)
    assert first.built
    monkeypatch.setattr(cache_mod, "decode_file", _no_decoding)
    second = load_or_build(_files(pngs), size=16, cache_dir=tmp_path / "c", progress=False)
    assert not second.built
    assert np.array_equal(first.images, second.images)
    assert second.paths == first.paths


def test_key_depends_on_size_files_and_mtime(pngs):
    files = _files(pngs)
    key = cache_key(files, 16)
    assert key == cache_key(files, 16)
    assert key != cache_key(files, 32)
    assert key != cache_key(files[:-1], 16)
    st = pngs[0].stat()
    os.utime(pngs[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert key != cache_key(files, 16)


def test_stale_version_is_rebuilt(pngs, tmp_path, monkeypatch):
    load_or_build(_files(pngs), size=16, cache_dir=tmp_path / "c", progress=False)
    monkeypatch.setattr(cache_mod, "CACHE_VERSION", cache_mod.CACHE_VERSION + 1)
    again = load_or_build(_files(pngs), size=16, cache_dir=tmp_path / "c", progress=False)
    assert again.built


def test_metadata_from_other_version_is_not_misread(pngs, tmp_path):
    first = load_or_build(_files(pngs), size=16, cache_dir=tmp_path / "c", progress=False)
    _npy, meta = cache_files(tmp_path / "c", first.key)
    data = json.loads(meta.read_text())
    data["version"] = -1
    meta.write_text(json.dumps(data))
    assert load_or_build(_files(pngs), size=16, cache_dir=tmp_path / "c", progress=False).built


def test_half_written_cache_and_leftover_temp_ignored(pngs, tmp_path, monkeypatch):
    cdir = tmp_path / "c"
    first = load_or_build(_files(pngs), size=16, cache_dir=cdir, progress=False)
    npy, meta = cache_files(cdir, first.key)
    meta.unlink()  # killed after the array, before the metadata
    (cdir / f"{npy.name}.tmp-abc123").write_bytes(b"garbage from a killed build")
    again = load_or_build(_files(pngs), size=16, cache_dir=cdir, progress=False)
    assert again.built
    assert np.array_equal(again.images, first.images)
    monkeypatch.setattr(cache_mod, "decode_file", _no_decoding)
    assert not load_or_build(_files(pngs), size=16, cache_dir=cdir, progress=False).built


def test_failed_build_leaves_no_cache(pngs, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod.np, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        load_or_build(_files(pngs), size=16, cache_dir=tmp_path / "c", progress=False)
    assert list((tmp_path / "c").glob("*.npy*")) == []


def test_small_trees_are_decoded_in_process(pngs, monkeypatch):
    def no_pool():
        raise AssertionError("a pool was started for a few kilobytes of PNGs")

    monkeypatch.setattr(cache_mod, "_pool_context", no_pool)
    assert len(decode_images(pngs * 6, size=16, num_workers=2, progress=False).ok) == 72


def test_parallel_decode_matches_serial(pngs, monkeypatch):
    monkeypatch.setattr(cache_mod, "_SERIAL_BELOW_BYTES", 0)  # a pool even for these small files
    many = pngs * 6
    serial = decode_images(many, size=16, num_workers=1, progress=False)
    parallel = decode_images(many, size=16, num_workers=2, progress=False)
    assert np.array_equal(serial.images, parallel.images)


def test_warm_load_is_fast(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(src / "0.png")
    data = (src / "0.png").read_bytes()
    files = []
    for i in range(2000):
        p = src / f"{i}.png"
        p.write_bytes(data)
        files.append((p.name, p))
    load_or_build(files, size=32, cache_dir=tmp_path / "c", progress=False)
    start = time.perf_counter()
    warm = load_or_build(files, size=32, cache_dir=tmp_path / "c", progress=False)
    assert not warm.built
    assert warm.images.shape == (2000, 3, 32, 32)
    assert time.perf_counter() - start < 1.0


def test_stalled_workers_fall_back_to_in_process(pngs, monkeypatch, caplog):
    parent = os.getpid()
    real = cache_mod._decode_task

    def stalled(args):
        if os.getpid() != parent:
            time.sleep(30)
        return real(args)

    monkeypatch.setattr(cache_mod, "_decode_task", stalled)  # forked workers see the patched module
    monkeypatch.setattr(cache_mod, "_RESULT_TIMEOUT_S", 1)
    monkeypatch.setattr(cache_mod, "_SERIAL_BELOW_BYTES", 0)
    result = decode_images(pngs * 6, size=8, num_workers=2, progress=False)
    assert len(result.ok) == 72
    assert "stalled" in caplog.text


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary garbage",
        b"[]",
        b'"a string"',
        b"null",
        b'{"version": %d, "key": "k", "size": 16, "paths": 7, "bad": []}' % cache_mod.CACHE_VERSION,
    ],
    ids=["binary", "list", "string", "null", "wrong-types"],
)
def test_damaged_metadata_is_rebuilt_with_a_warning(pngs, tmp_path, monkeypatch, caplog, content):
    cdir = tmp_path / "c"
    first = load_or_build(_files(pngs), size=16, cache_dir=cdir, progress=False)
    _npy, meta = cache_files(cdir, first.key)
    meta.write_bytes(content)
    again = load_or_build(_files(pngs), size=16, cache_dir=cdir, progress=False)
    assert again.built
    assert np.array_equal(again.images, first.images)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert str(meta) in warnings[0]
    assert "rebuilding" in warnings[0]
    assert "\n" not in warnings[0]
    monkeypatch.setattr(cache_mod, "decode_file", _no_decoding)  # the rebuilt cache is whole again
    assert not load_or_build(_files(pngs), size=16, cache_dir=cdir, progress=False).built


def _refuse_creating_files_in(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every attempt to create a file in ``folder`` fail as in a read-only folder."""
    real_open = os.open

    def guarded(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and Path(path).parent == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)


def test_read_only_cache_folder_continues_without_the_cache(pngs, tmp_path, monkeypatch, caplog):
    cdir = tmp_path / "ro"
    cdir.mkdir()
    _refuse_creating_files_in(cdir, monkeypatch)  # the lock file and the cache files alike
    first = load_or_build(_files(pngs), size=16, cache_dir=cdir, progress=False, build=False)
    assert first.built
    assert first.images.shape == (12, 3, 16, 16)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert f"cache folder {cdir} is not writable (Permission denied); continuing without the cache" in warnings[0]
    assert "--data.cache_dir" in warnings[0]
    assert list(cdir.iterdir()) == []


def test_read_only_cache_folder_with_a_cache_is_still_used(pngs, tmp_path, monkeypatch, caplog):
    cdir = tmp_path / "ro"
    first = load_or_build(_files(pngs), size=16, cache_dir=cdir, progress=False)
    for lock in cdir.glob("*.lock"):
        lock.unlink()
    _refuse_creating_files_in(cdir, monkeypatch)
    monkeypatch.setattr(cache_mod, "decode_file", _no_decoding)
    again = load_or_build(_files(pngs), size=16, cache_dir=cdir, progress=False)
    assert not again.built
    assert np.array_equal(again.images, first.images)


def test_read_only_cache_folder_for_real(pngs, tmp_path):
    cdir = tmp_path / "ro"
    cdir.mkdir()
    cdir.chmod(0o555)
    code = (
        "import sys; from pathlib import Path; from breakhis_lit.data.cache import load_or_build\n"
        "files = [(p.name, p) for p in sorted(Path(sys.argv[1]).glob('*.png'))]\n"
        "print(load_or_build(files, size=16, cache_dir=sys.argv[2], progress=False).images.shape)\n"
    )
    try:
        proc = run_python("-c", code, str(pngs[0].parent), str(cdir))
    finally:
        cdir.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(12, 3, 16, 16)"
    assert f"cache folder {cdir} is not writable" in proc.stderr
    assert list(cdir.iterdir()) == []


def _huge_png(path: Path) -> Path:
    """A real 15000x15000 PNG (1-bit, 120 kB): beyond Pillow's decompression-bomb limit."""
    Image.new("1", (15000, 15000)).save(path, compress_level=1)
    return path


def test_too_large_image_is_a_bad_image(pngs, tmp_path):
    huge = _huge_png(tmp_path / "src" / "huge.png")
    with pytest.raises(BadImageError) as err:
        decode_image(huge)
    assert err.value.reason == "too large: 15000×15000 pixels"
    result = decode_images([pngs[0], huge, pngs[1]], size=8, num_workers=1, progress=False)
    assert result.ok == [0, 2]
    assert result.bad == [(str(huge), "too large: 15000×15000 pixels")]
    cached = load_or_build(_files([pngs[0], huge, pngs[1]]), size=8, cache_dir=tmp_path / "c", progress=False)
    assert cached.bad == [("huge.png", "too large: 15000×15000 pixels")]
    assert cached.paths == [pngs[0].name, pngs[1].name]


def _deny_reading(victim: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make opening ``victim`` fail as for a mode-000 file (its size and mtime stay readable)."""
    real_read = cache_mod._read_file

    def guarded(path):
        if str(path) == str(victim):
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(cache_mod, "_read_file", guarded)


def test_permission_denied_is_not_remembered(pngs, tmp_path, monkeypatch):
    cdir, files = tmp_path / "c", _files(pngs)
    with monkeypatch.context() as mp:
        _deny_reading(pngs[3], mp)
        denied = load_or_build(files, size=16, cache_dir=cdir, progress=False)
        assert denied.bad == [(pngs[3].name, "permission denied")]
        again = load_or_build(files, size=16, cache_dir=cdir, progress=False)  # still denied: from the cache
        assert not again.built
        assert again.bad == [(pngs[3].name, "permission denied")]
    fixed = load_or_build(files, size=16, cache_dir=cdir, progress=False)  # same size and mtime: same key
    assert fixed.key == denied.key
    assert fixed.built
    assert fixed.bad == []
    assert fixed.paths == [p.name for p in pngs]
    monkeypatch.setattr(cache_mod, "decode_file", _no_decoding)
    warm = load_or_build(files, size=16, cache_dir=cdir, progress=False)
    assert not warm.built
    assert warm.bad == []
    assert np.array_equal(warm.images, fixed.images)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (FileNotFoundError(2, "No such file or directory"), "file not found"),
        (OSError(5, "Input/output error"), "read error: Input/output error"),
    ],
)
def test_read_errors_are_not_remembered(pngs, tmp_path, monkeypatch, error, reason):
    real_read = cache_mod._read_file

    def failing(path):
        if str(path) == str(pngs[0]):
            raise error
        return real_read(path)

    with monkeypatch.context() as mp:
        mp.setattr(cache_mod, "_read_file", failing)
        assert load_or_build(_files(pngs), size=16, cache_dir=tmp_path, progress=False).bad == [(pngs[0].name, reason)]
    assert load_or_build(_files(pngs), size=16, cache_dir=tmp_path, progress=False).bad == []


def test_mode_000_file_for_real(pngs, tmp_path):
    code = (
        "import sys; from pathlib import Path; from breakhis_lit.data.cache import load_or_build\n"
        "files = [(p.name, p) for p in sorted(Path(sys.argv[1]).glob('*.png'))]\n"
        "print(load_or_build(files, size=16, cache_dir=sys.argv[2], progress=False).bad)\n"
    )
    args = ("-c", code, str(pngs[0].parent), str(tmp_path / "c"))
    pngs[5].chmod(0o000)
    try:
        denied = run_python(*args)
    finally:
        pngs[5].chmod(0o644)
    assert denied.returncode == 0, denied.stderr
    assert denied.stdout.strip() == f"[('{pngs[5].name}', 'permission denied')]"
    fixed = run_python(*args)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == "[]"


@pytest.mark.parametrize("damage", ["zero-tail", "flip-one-byte", "truncate", "swap-in-another-array"])
def test_corrupted_array_is_detected_and_rebuilt(pngs, tmp_path, monkeypatch, caplog, damage):
    cdir, files = tmp_path / "c", _files(pngs)
    first = load_or_build(files, size=128, cache_dir=cdir, progress=False)
    npy, _ = cache_files(cdir, first.key)
    size = npy.stat().st_size
    assert size > 400_000
    if damage == "zero-tail":  # as a failing disk or an interrupted copy would: same size, last 200 kB zeroed
        with npy.open("r+b") as f:
            f.seek(size - 200_000)
            f.write(b"\0" * 200_000)
    elif damage == "flip-one-byte":
        with npy.open("r+b") as f:
            f.seek(size // 2)
            byte = f.read(1)
            f.seek(size // 2)
            f.write(bytes([byte[0] ^ 1]))
    elif damage == "truncate":
        os.truncate(npy, size - 1000)
    else:
        np.save(npy, np.zeros_like(first.images), allow_pickle=False)
    assert npy.stat().st_size == size or damage == "truncate"
    again = load_or_build(files, size=128, cache_dir=cdir, progress=False)
    assert again.built
    assert np.array_equal(again.images, first.images)  # not the black images of the damaged file
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"image cache {npy} is damaged (")
    assert warnings[0].endswith("; rebuilding it")
    monkeypatch.setattr(cache_mod, "decode_file", _no_decoding)
    assert np.array_equal(load_or_build(files, size=128, cache_dir=cdir, progress=False).images, first.images)


# ------------------------------------------------------------------------------------------------ stain targets
def test_stain_normalised_cache_on_real_samples(samples, tmp_path, monkeypatch):
    import torch

    from breakhis_lit.stain import IdentityTarget, MacenkoNormalizer, normalize_to

    files = _files(samples)
    raw = load_or_build(files, size=64, cache_dir=tmp_path, progress=False)
    target = MacenkoNormalizer().fit(torch.from_numpy(raw.images[:6]))
    normalised = load_or_build(files, size=64, cache_dir=tmp_path, stain_target=target, source=raw, progress=False)
    assert normalised.built
    assert normalised.key != raw.key
    assert normalised.key == cache_key(files, 64, stain=target.to_json())
    assert raw.key == cache_key(files, 64)  # raw keys are those of caches made before stain targets existed
    assert normalised.paths == raw.paths
    assert normalised.digests == raw.digests
    expected = normalize_to(torch.from_numpy(raw.images), target).numpy()
    assert np.array_equal(normalised.images, expected)
    assert not np.array_equal(normalised.images, raw.images)
    monkeypatch.setattr(cache_mod, "decode_file", _no_decoding)
    monkeypatch.setattr(cache_mod, "normalize_images", _no_decoding)
    again = load_or_build(files, size=64, cache_dir=tmp_path, stain_target=target, progress=False)
    assert not again.built
    assert np.array_equal(again.images, normalised.images)
    assert (
        load_or_build(files, size=64, cache_dir=tmp_path, stain_target=IdentityTarget(), progress=False).key == raw.key
    )
    other = MacenkoNormalizer().fit(torch.from_numpy(raw.images[6:]))
    assert cache_key(files, 64, stain=other.to_json()) != normalised.key


def test_stain_normalised_cache_without_a_source_builds_the_raw_one(pngs, tmp_path):
    import torch

    from breakhis_lit.stain import ReinhardNormalizer

    files = _files(pngs)
    target = ReinhardNormalizer().fit(torch.from_numpy(decode_images(pngs, 16, progress=False).images))
    normalised = load_or_build(files, size=16, cache_dir=tmp_path / "c", stain_target=target, progress=False)
    assert normalised.built
    assert len(list((tmp_path / "c").glob("*.npy"))) == 2  # the raw cache, and the normalised one
    raw = load_or_build(files, size=16, cache_dir=tmp_path / "c", progress=False)
    assert not raw.built


def test_stain_normalised_cache_keeps_the_bad_images_apart(tmp_path):
    import torch

    from breakhis_lit.stain import ReinhardNormalizer

    (tmp_path / "src").mkdir()
    paths = _bad_files(tmp_path / "src")
    raw = load_or_build(_files(paths), size=8, cache_dir=tmp_path / "c", progress=False)
    target = ReinhardNormalizer().fit(torch.from_numpy(raw.images))
    normalised = load_or_build(_files(paths), size=8, cache_dir=tmp_path / "c", stain_target=target, progress=False)
    again = load_or_build(_files(paths), size=8, cache_dir=tmp_path / "c", stain_target=target, progress=False)
    assert normalised.bad == again.bad == raw.bad
    assert not again.built
