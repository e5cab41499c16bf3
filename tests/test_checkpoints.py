"""Tests of checkpoint resolution, atomic writing and safe reading."""

from pathlib import Path

import pytest
import torch

from breakhis_lit.checkpoints import (
    AtomicCheckpointIO,
    check_checkpoint_matches,
    check_safe_classes,
    find_run_checkpoint,
    load_classifier,
    read_checkpoint,
)
from breakhis_lit.errors import BreakHisError


def _ckpt(path: Path, backbone: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    hparams = {"backbone": backbone} if backbone else {}
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": hparams}, path)
    return path


def test_find_newest_run_with_the_file(tmp_path: Path) -> None:
    exp = tmp_path / "attn"
    _ckpt(exp / "version_0/checkpoints/best.ckpt")
    _ckpt(exp / "version_3/checkpoints/best.ckpt")
    (exp / "version_7").mkdir()  # newest, but crashed before any checkpoint
    path, version = find_run_checkpoint(exp, None, default="best")
    assert version == 3
    assert path == exp / "version_3/checkpoints/best.ckpt"
    explicit, version = find_run_checkpoint(exp, str(exp / "version_0/checkpoints/best.ckpt"), default="best")
    assert version == 0
    assert explicit.name == "best.ckpt"


def test_no_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BreakHisError, match=r"no run of experiment 'attn'.*breakhis fit"):
        find_run_checkpoint(tmp_path / "attn", None, default="best")
    with pytest.raises(BreakHisError, match="no such file"):
        find_run_checkpoint(tmp_path / "attn", str(tmp_path / "nope.ckpt"), default="best")


def test_not_a_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(BreakHisError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(bad)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(BreakHisError, match="not a Lightning checkpoint"):
        read_checkpoint(plain)


def test_checkpoint_executing_code_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Evil()}, path)
    with pytest.raises(BreakHisError, match=r"is not loaded \(it names \S*print, which is neither a tensor"):
        read_checkpoint(path)


def test_foreign_class_paths_are_not_imported(tmp_path: Path) -> None:
    path = _ckpt(tmp_path / "x.ckpt", {"class_path": "os.system", "init_args": {}})
    with pytest.raises(BreakHisError, match="not loaded for safety"):
        load_classifier(path)


def test_architecture_mismatch_names_both(tmp_path: Path) -> None:
    path = _ckpt(
        tmp_path / "dala.ckpt",
        {"class_path": "breakhis_lit.models.DALAResNet50", "init_args": {"num_classes": 2}},
    )
    timm_cfg = {"class_path": "breakhis_lit.models.TimmClassifier", "init_args": {"model_name": "resnet50"}}
    with pytest.raises(BreakHisError, match=r"holds a DALAResNet50.*builds a TimmClassifier\(model_name=resnet50\)"):
        check_checkpoint_matches(path, timm_cfg)
    check_checkpoint_matches(path, {"class_path": "breakhis_lit.models.DALAResNet50", "init_args": {}})


def test_atomic_save_keeps_previous_file_when_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    io = AtomicCheckpointIO(background=False)
    target = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(1)}}, target)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # a kill in the middle of torch.save

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1)}}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["state_dict"]["w"].item() == 1.0
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def test_background_write_snapshots_the_tensors(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    weights = torch.ones(1000)
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": weights}}, target)
    weights.zero_()  # training goes on while the file is written
    loaded = io.load_checkpoint(target, weights_only=True)  # waits for the write
    assert loaded["state_dict"]["w"].sum().item() == 1000
    io.teardown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_two_background_saves_never_mix(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    weights = torch.ones(1000).view(10, 100).t()  # non-contiguous: its layout is kept in the snapshot
    first, second = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    io.save_checkpoint({"state_dict": {"w": weights}, "step": torch.tensor(1)}, first)
    weights.mul_(2)
    io.save_checkpoint({"state_dict": {"w": weights}, "step": torch.tensor(2)}, second)
    weights.zero_()
    io.teardown()
    a, b = torch.load(first, weights_only=True), torch.load(second, weights_only=True)
    assert a["state_dict"]["w"].sum().item() == 1000
    assert a["step"].item() == 1
    assert b["state_dict"]["w"].sum().item() == 2000
    assert b["step"].item() == 2
    assert b["state_dict"]["w"].stride() == (1, 100)


def test_losses_are_loaded_and_foreign_functions_are_not(tmp_path: Path) -> None:
    loss = _ckpt(tmp_path / "loss.ckpt", {"class_path": "torch.nn.CrossEntropyLoss", "init_args": {}})
    check_safe_classes(torch.load(loss, weights_only=True), loss)
    checkpoint = torch.load(loss, weights_only=True)
    checkpoint["hyper_parameters"]["criterion"] = "os.system"  # a function's import path, not a class_path
    with pytest.raises(BreakHisError, match=r"names class 'os.system', which is not loaded for safety"):
        check_safe_classes(checkpoint, loss)


def test_matching_refuses_foreign_class_paths_too(tmp_path: Path) -> None:
    # Same class name, other module: the CLI would import it while applying the checkpoint's hyper-parameters.
    path = _ckpt(tmp_path / "x.ckpt", {"class_path": "evil.DALAResNet50", "init_args": {}})
    with pytest.raises(BreakHisError, match="not loaded for safety"):
        check_checkpoint_matches(path, {"class_path": "breakhis_lit.models.DALAResNet50", "init_args": {}})


class _Pickled:
    """A class a checkpoint may hold an instance of, which weights_only loading refuses."""


@pytest.mark.parametrize("kind", ["objects", "truncated"])
def test_refusals_say_what_the_file_is_and_never_advise_unsafe_loading(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "extra": _Pickled()}, path)
    if kind == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(BreakHisError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    assert "weights_only" not in message
    assert message.startswith(str(path))
    assert "pass a .ckpt written by `breakhis fit`" in message
    if kind == "objects":
        assert f"is not loaded (it names {_Pickled.__module__}._Pickled, which is neither a tensor" in message
    else:
        assert "is not a readable PyTorch checkpoint (truncated or damaged" in message
