"""Pretrained backbones that fine-tune correctly: a local ImageNet weights file, frozen batch
norms, the backbone's own learning rate, the input normalisation, and CIFAR-10 as an
image folder (``experiment=cifar10``)."""

from __future__ import annotations

import os

import hydra
import pytest
import torch
import torchvision

from graphvision.nn.features import RegionFeatures, freeze_batch_norm
from tests.conftest import ROOT, SCENE_INFO, build_module, compose_cfg, compose_cifar10_handful

WEIGHTS = os.environ.get(
    "GRAPHVISION_WEIGHTS",
    str(ROOT.parent / "shared" / "weights" / "mobilenet_v2_imagenet1k_qnnpack_float.pth"),
)


@pytest.fixture(scope="session")
def imagenet_weights() -> str:
    """The ImageNet MobileNetV2 state dict from $GRAPHVISION_WEIGHTS (default
    ../shared/weights/mobilenet_v2_imagenet1k_qnnpack_float.pth)."""
    if not os.path.isfile(WEIGHTS):
        pytest.skip(f"ImageNet weights not found at {WEIGHTS} (set GRAPHVISION_WEIGHTS)")
    return WEIGHTS


def test_local_weights_load_strictly_and_change_the_features(imagenet_weights):
    """Every tensor of the file lands in the backbone (a strict load: torchvision's own
    model takes it too), and the features differ from random weights'."""
    state = torch.load(imagenet_weights, map_location="cpu", weights_only=True)
    torchvision.models.mobilenet_v2().load_state_dict(state, strict=True)
    pretrained = RegionFeatures("mobilenet_v2", ["features.18"], weights=imagenet_weights)
    loaded = pretrained.body.state_dict()
    assert set(loaded) <= set(state) and len(loaded) > 200
    for key, value in loaded.items():
        assert torch.equal(value, state[key]), key
    random = RegionFeatures("mobilenet_v2", ["features.18"]).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(
            pretrained.eval().feature_map(images), random.feature_map(images), atol=1e-3
        )


def test_imagenet_weights_recognise_a_cat_through_the_backbones_normalisation(imagenet_weights):
    """An oracle on a real photo (scikit-image's Chelsea, a tabby cat): the weights' own
    classifier on the backbone's normalised input ranks an ImageNet cat class first (281-285),
    so the file and the normalisation agree."""
    skimage_data = pytest.importorskip("skimage.data")
    features = RegionFeatures("mobilenet_v2", ["features.18"], weights=imagenet_weights)
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(imagenet_weights, map_location="cpu", weights_only=True))
    photo = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float()[None] / 255
    photo = torch.nn.functional.interpolate(photo, size=(224, 224), mode="bilinear")
    with torch.no_grad():
        logits = model.eval()((photo - features.mean) / features.std)
    assert 281 <= int(logits.argmax()) <= 285


def _train_steps(features: RegionFeatures, steps: int = 3) -> None:
    opt = torch.optim.SGD([p for p in features.parameters() if p.requires_grad], lr=0.1)
    features.train()
    torch.manual_seed(0)
    for _ in range(steps):
        loss = features.feature_map(torch.rand(4, 3, 64, 64)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_freeze_bn_keeps_statistics_bit_identical_while_convolutions_train(name, request):
    """``freeze_bn``: after training steps every batch-norm buffer is bit-identical and every
    convolution has changed; without it the same steps change the running statistics.
    MobileNetV2 from the ImageNet file (its batch norms are the folded identity), resnet18
    from random weights."""
    weights = request.getfixturevalue("imagenet_weights") if name == "mobilenet_v2" else None
    node = "features.18" if name == "mobilenet_v2" else "layer4"
    frozen = RegionFeatures(name, [node], weights=weights, freeze_bn=True)
    norms = [m for m in frozen.modules() if isinstance(m, torchvision.ops.FrozenBatchNorm2d)]
    assert norms and not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    buffers = {k: v.clone() for k, v in frozen.body.named_buffers()}
    convs = {k: v.clone() for k, v in frozen.body.named_parameters() if v.ndim == 4}
    _train_steps(frozen)
    for key, value in frozen.body.named_buffers():
        assert torch.equal(value, buffers[key]), key
    for key, value in frozen.body.named_parameters():
        if value.ndim == 4:
            assert not torch.equal(value, convs[key]), key
    plain = RegionFeatures(name, [node], weights=weights)
    before = {k: v.clone() for k, v in plain.body.named_buffers() if "running_mean" in k}
    _train_steps(plain)
    after = dict(plain.body.named_buffers())
    assert [k for k in before if not torch.equal(after[k], before[k])]


def test_freeze_batch_norm_computes_what_eval_mode_batch_norm_computes():
    """The frozen layer is the batch norm in eval mode, on random statistics."""
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(5)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 2)
    bn.bias.data.uniform_(-1, 1)
    x = torch.randn(2, 5, 4, 4)
    expected = bn.eval()(x)
    holder = torch.nn.Sequential(bn)
    freeze_batch_norm(holder)
    assert isinstance(holder[0], torchvision.ops.FrozenBatchNorm2d)
    torch.testing.assert_close(holder.train()(x), expected)


@pytest.mark.parametrize("net", ["default", "cnn_baseline"])
def test_lr_scale_puts_the_backbone_in_its_own_parameter_groups(net):
    """``model.backbone.lr_scale``: the backbone's parameters, and only they, are in groups at
    ``lr * lr_scale``; every trainable parameter is in exactly one group; decay as before
    (none on biases and norms); the scheduler scales every group alike."""
    module = build_module(
        SCENE_INFO, [f"model={net}", "model.backbone.lr_scale=0.1", "model.lr=0.002"]
    )
    opt = module.make_optimizer()
    backbone = {id(p) for p in module.net.features.parameters()}
    seen = []
    for group in opt.param_groups:
        ids = {id(p) for p in group["params"]}
        seen += list(ids)
        if group["name"].startswith("backbone"):
            assert ids <= backbone and group["lr"] == pytest.approx(0.0002)
        else:
            assert not ids & backbone and group["lr"] == pytest.approx(0.002)
        assert group["weight_decay"] == (0.0 if group["name"].endswith("no_decay") else 0.05)
        assert all((p.ndim < 2) == group["name"].endswith("no_decay") for p in group["params"])
    trainable = [id(p) for p in module.parameters() if p.requires_grad]
    assert sorted(seen) == sorted(trainable)
    assert {g["name"] for g in opt.param_groups} == {
        "backbone",
        "backbone_no_decay",
        "rest",
        "rest_no_decay",
    }
    torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)  # sets each group's lr
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["rest"] == pytest.approx(0.001)
    assert lrs["backbone"] / lrs["rest"] == pytest.approx(0.1)


def test_frozen_backbone_has_no_parameter_group_and_bad_lr_scale_is_refused():
    module = build_module(SCENE_INFO, ["model.backbone.trainable=false"])
    names = {g["name"] for g in module.make_optimizer().param_groups}
    assert names == {"rest", "rest_no_decay"}
    with pytest.raises(ValueError, match="lr_scale"):
        RegionFeatures(lr_scale=0.0)


def test_normalisation_is_configurable_and_checked():
    features = RegionFeatures(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    torch.testing.assert_close(features.mean.flatten(), torch.full((3,), 0.5))
    torch.testing.assert_close(features.std.flatten(), torch.full((3,), 0.25))
    default = RegionFeatures()
    torch.testing.assert_close(default.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    with pytest.raises(ValueError, match="backbone.std"):
        RegionFeatures(std=[0.2, 0.0, 0.2])
    with pytest.raises(ValueError, match="backbone.mean"):
        RegionFeatures(mean=[0.5, 0.5])


def test_mobilenet_v2_config_return_nodes_have_the_strides_it_names(tmp_path):
    """``model/backbone=mobilenet_v2``: the nodes its comments name have strides 8, 16 and
    32 and the channels given there; the backbone alone pools ``features.18``."""
    cfg = compose_cfg(overrides=["model/backbone=mobilenet_v2"], tmp=tmp_path)
    assert list(cfg.model.backbone.return_nodes) == ["features.6"]
    nodes = ["features.6", "features.13", "features.17", "features.18"]
    features = RegionFeatures("mobilenet_v2", nodes).eval()
    with torch.no_grad():
        maps = features.feature_maps(torch.zeros(1, 3, 160, 160))
    assert [(m.shape[1], 160 // m.shape[-1]) for m in maps] == [
        (32, 8),
        (96, 16),
        (320, 32),
        (1280, 32),
    ]
    module = build_module(SCENE_INFO, ["model=cnn_baseline", "model/backbone=mobilenet_v2"])
    assert module.net.features.return_nodes == ["features.18"]


def test_cifar10_experiment_composes_and_trains_a_step(tmp_path, cifar10):
    """``experiment=cifar10`` on two photos of each class (``data.per_class``): the data
    module takes the first of each class folder, and a step trains."""
    from graphvision.train import train

    cfg = compose_cifar10_handful("cifar10", cifar10, tmp_path)
    assert cfg.data.augment.pad == 0.125 and cfg.data.augment.min_scale == 1.0
    dm = hydra.utils.instantiate(cfg.data)
    jobs = dm.split_jobs("train")
    assert len(jobs) == 20 and sorted(j.label for j in jobs) == sorted(list(range(10)) * 2)
    assert len(dm.split_jobs("val")) == 10
    metrics = train(cfg)
    assert "val/acc" in metrics and 0.0 <= metrics["val/acc"] <= 1.0
