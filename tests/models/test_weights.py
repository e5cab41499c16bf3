"""Weights: local files (round trip, other layouts, mismatches) and ImageNet downloads without a network."""

import urllib.error

import pytest
import timm
import torch
import torchvision

from breakhis_lit.errors import BreakHisError
from breakhis_lit.models import (
    DALAResNet,
    DALAResNet50,
    TimmClassifier,
    VGG16Inception,
    read_state_dict,
    save_weights,
)
from breakhis_lit.models.weights import WEIGHTS_OPTION, strip_prefixes


@pytest.fixture
def no_network(monkeypatch):
    """Every torchvision and timm download raises, as on an offline machine."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_hf", refuse)
    monkeypatch.setattr(timm.models._builder, "download_cached_file", refuse)


def assert_same_tensors(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def make(factory, seed):
    torch.manual_seed(seed)
    return factory()


ROUND_TRIP = {
    "dala18": lambda **kw: DALAResNet("resnet18", **kw),
    "dala18_each_block_two_layer": lambda **kw: DALAResNet(
        "resnet18", gate_position="each_block", head="two_layer", **kw
    ),
    "timm_resnet18": lambda **kw: TimmClassifier("resnet18", **kw),
}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("kind", list(ROUND_TRIP))
def test_round_trip(kind, suffix, tmp_path):
    source = make(ROUND_TRIP[kind], 0)
    path = save_weights(source, tmp_path / f"{kind}{suffix}")
    target = make(lambda: ROUND_TRIP[kind](weights=str(path)), 1)
    assert not torch.equal(
        target.state_dict()["conv1.weight" if kind != "timm_resnet18" else "model.conv1.weight"],
        source.state_dict()["conv1.weight" if kind != "timm_resnet18" else "model.conv1.weight"],
    )
    target.load_pretrained()
    assert_same_tensors(source, target)
    assert target.load_report.skipped_head == []
    assert target.load_report.ignored == []
    assert str(path) in target.load_report.summary()


def test_training_checkpoint_layouts(tmp_path):
    """Nested {"state_dict": {"backbone.*"}} (Lightning) and {"model": {"module.*"}} (DDP) files load."""
    source = make(lambda: DALAResNet("resnet18"), 0)
    lightning = {
        "epoch": 3,
        "state_dict": {
            **{f"backbone.{k}": v for k, v in source.state_dict().items()},
            "criterion.weight": torch.ones(2),
        },
    }
    torch.save(lightning, tmp_path / "best.ckpt")
    target = make(lambda: DALAResNet("resnet18", weights=tmp_path / "best.ckpt"), 1)
    target.load_pretrained()
    assert_same_tensors(source, target)
    assert target.load_report.ignored == ["criterion.weight"]

    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "ddp.pt")
    target = make(lambda: DALAResNet("resnet18", weights=tmp_path / "ddp.pt"), 1)
    target.load_pretrained()
    assert_same_tensors(source, target)


def test_timm_plain_layout_and_lightning_layout(tmp_path):
    """The original timm layout (no ``model.`` prefix) and ``backbone.model.*`` both load."""
    source = make(lambda: TimmClassifier("resnet18"), 0)
    save_weights(source.model, tmp_path / "resnet18_timm.safetensors")
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "x.ckpt")
    for name in ("resnet18_timm.safetensors", "x.ckpt"):
        target = make(lambda n=name: TimmClassifier("resnet18", weights=tmp_path / n), 1)
        target.load_pretrained()
        assert_same_tensors(source, target)


def test_timm_original_layout_is_converted(tmp_path):
    """Meta's DINOv2 layout (mask_token, other grid) goes through timm's converter into a 224-style model."""
    source = make(lambda: TimmClassifier("vit_small_patch14_dinov2", img_size=56), 0)  # 4x4 grid, like 518
    meta = {k: v for k, v in source.model.state_dict().items() if not k.startswith("head.")}  # headless
    meta["mask_token"] = torch.zeros(1, 384)
    torch.save(meta, tmp_path / "dinov2_vits14_pretrain.pth")
    target = make(
        lambda: TimmClassifier(
            "vit_small_patch14_dinov2", img_size=28, weights=tmp_path / "dinov2_vits14_pretrain.pth"
        ),
        1,
    )
    target.load_pretrained()
    assert target.model.pos_embed.shape == (1, 1 + 2 * 2, 384)  # resampled 4x4 -> 2x2
    assert torch.equal(target.model.blocks[0].attn.qkv.weight, source.model.blocks[0].attn.qkv.weight)
    assert sorted(target.load_report.left_initialised) == ["head.bias", "head.weight"]


def test_imagenet_layout_into_dala(tmp_path):
    """A torchvision ResNet ImageNet checkpoint fills the trunk; its fc is skipped, gate and head stay new."""
    tv = make(lambda: torchvision.models.resnet18(num_classes=1000), 0)
    tv_state = {k: v for k, v in tv.state_dict().items() if not k.endswith("num_batches_tracked")}  # old format
    torch.save(tv_state, tmp_path / "resnet18.pth")
    model = make(lambda: DALAResNet("resnet18", weights=str(tmp_path / "resnet18.pth")), 1)
    fresh = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("attention.", "head."))}
    model.load_pretrained()
    state = model.state_dict()
    for key, value in tv_state.items():
        if not key.startswith("fc."):
            assert torch.equal(state[key], value), key
    for key, value in fresh.items():
        assert torch.equal(state[key], value), key
    report = model.load_report
    assert sorted(report.skipped_head) == ["fc.bias", "fc.weight"]
    assert set(report.left_initialised) == set(fresh)
    assert "skipped the source's classifier head" in report.summary()


def test_head_of_another_class_count_is_skipped(tmp_path):
    source = make(lambda: DALAResNet("resnet18", num_classes=8), 0)
    save_weights(source, tmp_path / "subtype.pth")
    target = DALAResNet("resnet18", num_classes=2, weights=tmp_path / "subtype.pth")
    target.load_pretrained()
    assert sorted(target.load_report.skipped_head) == ["head.fc.bias", "head.fc.weight"]
    assert torch.equal(target.attention.fc1.weight, source.attention.fc1.weight)


def test_file_from_another_architecture_names_first_mismatch(tmp_path):
    save_weights(make(lambda: DALAResNet("resnet18"), 0), tmp_path / "r18.pth")
    with pytest.raises(BreakHisError) as info:
        DALAResNet50(weights=tmp_path / "r18.pth").load_pretrained()
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "r18.pth") in message
    assert "'layer1.0.conv1.weight'" in message
    assert "(64, 64, 3, 3)" in message
    assert "(64, 64, 1, 1)" in message

    save_weights(make(lambda: TimmClassifier("resnet18"), 0), tmp_path / "timm18.safetensors")
    with pytest.raises(BreakHisError, match=r"'layer1\.2\.conv1\.weight'.*missing from the file"):
        TimmClassifier("resnet34", weights=tmp_path / "timm18.safetensors").load_pretrained()


def test_gates_of_another_placement_are_unexpected(tmp_path):
    save_weights(DALAResNet("resnet18", gate_position="each_block"), tmp_path / "each.pth")
    with pytest.raises(BreakHisError, match=r"'layer1\.0\.gate\.fc1\.weight'.*no counterpart"):
        DALAResNet("resnet18", weights=tmp_path / "each.pth").load_pretrained()


def test_partial_gate_is_an_error(tmp_path):
    state = DALAResNet("resnet18").state_dict()
    del state["attention.fc2.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(BreakHisError, match=r"'attention\.fc2\.weight'.*missing from the file"):
        DALAResNet("resnet18", weights=tmp_path / "partial.pth").load_pretrained()


def test_unreadable_files(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(BreakHisError, match=f"{missing}: weights file not found"):
        DALAResNet("resnet18", weights=missing).load_pretrained()
    (tmp_path / "w.h5").write_bytes(b"x")
    with pytest.raises(BreakHisError, match="unknown weights file type"):
        read_state_dict(tmp_path / "w.h5")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(BreakHisError, match="cannot read weights") as info:
        read_state_dict(tmp_path / "junk.pth")
    assert "\n" not in str(info.value)
    torch.save({"conv1.weight": torch.zeros(1), "when": urllib.error.URLError("x")}, tmp_path / "objects.pth")
    with pytest.raises(BreakHisError, match=r"it names urllib2?[.\w]*URLError, which is neither a tensor") as info:
        read_state_dict(tmp_path / "objects.pth")
    assert "weights_only" not in str(info.value)
    torch.save({"conv1.weight": torch.zeros(1), "note": "text"}, tmp_path / "mixed.pth")
    with pytest.raises(BreakHisError, match="'note' is a str"):
        read_state_dict(tmp_path / "mixed.pth")


def test_save_weights_never_overwrites(tmp_path):
    model = DALAResNet("resnet18")
    save_weights(model, tmp_path / "w.pth")
    with pytest.raises(BreakHisError, match="already exists"):
        save_weights(model, tmp_path / "w.pth")
    save_weights(model, tmp_path / "w.pth", overwrite=True)
    with pytest.raises(BreakHisError, match="unknown weights file type"):
        save_weights(model, tmp_path / "w.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pth"]


@pytest.mark.parametrize(
    ("factory", "arch"),
    [
        (lambda: DALAResNet("resnet18", pretrained=True), "resnet18"),
        (lambda: VGG16Inception(pretrained=True), "vgg16"),
        (lambda: TimmClassifier("resnet18", pretrained=True), "resnet18"),
    ],
    ids=["dala", "vgg_inception", "timm"],
)
def test_download_failure_is_one_line_error_pointing_at_weights(factory, arch, no_network):
    model = factory()  # construction never loads
    with pytest.raises(BreakHisError) as info:
        model.load_pretrained()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"could not download ImageNet weights for {arch} (no network?")
    assert f"{WEIGHTS_OPTION} /path/to/{arch}." in message
    assert "weights" in message


def test_local_weights_win_over_download(tmp_path, no_network):
    source = make(lambda: TimmClassifier("resnet18"), 0)
    save_weights(source, tmp_path / "r18.pth")
    target = TimmClassifier("resnet18", pretrained=True, weights=str(tmp_path / "r18.pth"))
    target.load_pretrained()
    assert_same_tensors(source, target)


def test_no_weights_is_a_no_op():
    model = make(lambda: DALAResNet("resnet18"), 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_pretrained()
    assert model.load_report is None
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_pretrained_from_cache_torchvision(monkeypatch):
    """What the torch hub returns (cache or download) goes into the DALA trunk."""
    tv = make(lambda: torchvision.models.resnet18(), 0)
    urls = []

    def fake_download(url, *args, **kwargs):
        urls.append(url)
        return tv.state_dict()

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_download)
    model = DALAResNet("resnet18", pretrained=True)
    model.load_pretrained()
    assert urls == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url]
    assert torch.equal(model.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)
    assert model.load_report.source == urls[0]


def test_pretrained_from_cache_timm(monkeypatch):
    """The timm pretrained model (hub cache or download) is copied in; its 1000-class head is skipped."""
    reference = make(lambda: timm.create_model("resnet18"), 0)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_hf", lambda *a, **k: reference.state_dict())
    model = make(lambda: TimmClassifier("resnet18", num_classes=2, pretrained=True), 1)
    head = model.model.fc.weight.clone()
    model.load_pretrained()
    assert torch.equal(model.model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    assert torch.equal(model.model.fc.weight, head)
    assert sorted(model.load_report.skipped_head) == ["fc.bias", "fc.weight"]


def test_strip_prefixes():
    t = torch.zeros(1)
    sd, dropped = strip_prefixes({"backbone.model.a": t, "backbone.model.b": t, "loss.w": t}, ["a", "b"])
    assert sorted(sd) == ["a", "b"]
    assert dropped == ["loss.w"]
    sd, dropped = strip_prefixes({"model.a": t}, ["model.a"])  # a network whose own names start with model.
    assert list(sd) == ["model.a"]
    assert dropped == []
