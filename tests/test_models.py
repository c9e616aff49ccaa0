"""Every registered model builds, runs forward and backward, and matches its paper."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from conftest import meta_model
from resnetlab.analysis import count_params
from resnetlab.models import (
    BasicBlock,
    Bottleneck,
    ResNet,
    ResNetSpec,
    UnknownModelError,
    ZeroPadShortcut,
    create_model,
    get_entry,
    list_models,
    model_spec,
    register_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # the CPU is shared: see conftest

ALL = list_models()


def small_input(name: str) -> torch.Tensor:
    """The smallest input every net runs on, size not being what the forward/backward test
    checks: a CIFAR stem halves twice (8 → 2 pixels), an ImageNet stem or VGG 32 times
    (32 → 1); with two images every BN channel still sees more than one value in training."""
    spec = model_spec(name)
    side = 8 if isinstance(spec, ResNetSpec) and spec.stem == "cifar" else 32
    return torch.randn(2, 3, side, side)


def test_registry_is_complete() -> None:
    expected = {
        *(f"resnet{d}" for d in (18, 34, 50, 101, 152)),
        *(f"resnet{d}_v1_5" for d in (50, 101, 152)),
        *(f"resnet{d}" for d in (20, 32, 44, 56, 110, 1202)),
        *(f"plain{d}" for d in (18, 34, 20, 32, 44, 56, 110)),
        "preact_resnet164",
        "preact_resnet1001",
        "preact_resnet18",
        "preact_resnet50",
        "wide_resnet50_2",
        "wide_resnet101_2",
        "resnext50_32x4d",
        "resnext101_32x8d",
        *(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")),
    }
    assert expected <= set(ALL)
    assert len(ALL) == len(set(ALL))


@pytest.mark.parametrize("name", ALL)
def test_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    x = small_input(name)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.logsumexp(dim=1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads), "every parameter takes part in the forward pass"
    assert any(bool(g.ne(0).any()) for g in grads if g is not None)  # some gradient flows


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet50", model_spec("resnet50"), family="imagenet", description="x")


def test_unknown_model_names_closest_matches() -> None:
    with pytest.raises(UnknownModelError, match="did you mean resnet50"):
        create_model("resnt50")
    with pytest.raises(UnknownModelError, match="unknown model 'zzzz'"):
        create_model("zzzz")


def test_list_models_pattern() -> None:
    assert list_models("resnet5*") == ["resnet50", "resnet50_v1_5", "resnet56"]
    assert list_models("vgg*_bn") == ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
    assert list_models("nothing*") == []


def test_unknown_override_is_rejected_with_the_options() -> None:
    with pytest.raises(ValueError, match=r"has no option 'colour'.*num_classes"):
        create_model("resnet20", colour="red")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"num_classes": -1}, "num_classes"),
        ({"in_channels": -1}, "in_channels"),
        ({"kernel_size": 4}, "odd"),
        ({"shortcut": "D"}, "shortcut"),
        ({"placement": "v2"}, "placement"),
        ({"width": 0}, "width"),
        ({"dropout": 1.5}, "dropout"),
        ({"layers": ()}, "non-empty"),
    ],
)
def test_bad_options_raise_clear_errors(override: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("resnet20", **override)


# ---------------------------------------------------------------- paper numbers
# He et al. 2015, Table 6 (CIFAR-10, option A): parameters in millions, and the exact
# counts of the reference implementation these round to.
CIFAR_PARAMS = {
    "resnet20": (0.27, 269_722),
    "resnet32": (0.46, 464_154),
    "resnet44": (0.66, 658_586),
    "resnet56": (0.85, 853_018),
    "resnet110": (1.7, 1_727_962),
    "resnet1202": (19.4, 19_421_274),
}


@pytest.mark.parametrize(("name", "expected"), CIFAR_PARAMS.items())
def test_cifar_parameter_counts_match_the_paper(name: str, expected: tuple[float, int]) -> None:
    paper, exact = expected
    n = count_params(meta_model(name))
    assert n == exact
    digits = 2 if paper < 1 else 1
    assert round(n / 1e6, digits) == paper


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_twin_has_the_same_layers_without_shortcuts(depth: int) -> None:
    plain, res = meta_model(f"plain{depth}"), meta_model(f"resnet{depth}")
    assert count_params(plain) == count_params(res)  # option A adds no parameters
    assert not any(isinstance(m, ZeroPadShortcut) for m in plain.modules())
    assert sum(isinstance(m, ZeroPadShortcut) for m in res.modules()) == 2
    assert [p.shape for p in plain.parameters()] == [p.shape for p in res.parameters()]


def test_plain_imagenet_twins_have_no_shortcuts() -> None:
    for name in ("plain18", "plain34"):
        model = meta_model(name)
        assert all(b.downsample is None and not b.residual for b in model.blocks())


@pytest.mark.parametrize(
    ("name", "millions", "tolerance"),
    [
        ("preact_resnet164", 1.7, 0.01),  # He et al. 2016, Table 2
        ("preact_resnet1001", 10.2, 0.02),  # paper says 10.2M; the network counts 10.33M
        ("wide_resnet28_10", 36.5, 0.01),  # Zagoruyko & Komodakis 2016, Table 4
    ],
)
def test_other_paper_counts(name: str, millions: float, tolerance: float) -> None:
    n = count_params(meta_model(name)) / 1e6
    assert abs(n - millions) / millions < tolerance


def test_depths_follow_the_names() -> None:
    for name in (
        "resnet20",
        "resnet1202",
        "resnet50",
        "resnet152",
        "plain34",
        "preact_resnet164",
        "preact_resnet1001",
    ):
        spec = model_spec(name)
        assert isinstance(spec, ResNetSpec)
        assert str(spec.depth) in name


# ---------------------------------------------------------------- stride placement
def test_placement_by_name_and_keyword() -> None:
    paper = meta_model("resnet50")
    assert isinstance(paper, ResNet)
    first = paper.layer2[0]
    assert isinstance(first, Bottleneck)
    assert first.conv1.stride == (2, 2)
    assert first.conv2.stride == (1, 1)
    tv = meta_model("resnet50_v1_5")
    assert isinstance(tv, ResNet)
    assert tv.layer2[0].conv1.stride == (1, 1)
    assert tv.layer2[0].conv2.stride == (2, 2)
    by_keyword = meta_model("resnet50", placement="v1.5")
    assert isinstance(by_keyword, ResNet)
    assert by_keyword.spec == tv.spec


def test_placements_compute_the_same_shapes_with_different_costs() -> None:
    from resnetlab.analysis import compare

    rows = compare("resnet50", "resnet50_v1_5").rows
    assert rows[0].params == rows[1].params
    assert rows[1].conv_macs > rows[0].conv_macs  # the 3×3 sees 4× the pixels in v1.5


# ---------------------------------------------------------------- shortcuts
def test_option_a_pads_and_subsamples() -> None:
    sc = ZeroPadShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0
    assert count_params(sc) == 0
    with pytest.raises(ValueError, match="cannot reduce"):
        ZeroPadShortcut(32, 16)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_option_a_pickles_and_scripts() -> None:
    sc = ZeroPadShortcut(16, 64, stride=2)
    x = torch.randn(1, 16, 9, 9)
    scripted = torch.jit.script(sc)
    assert torch.equal(scripted(x), sc(x))
    assert torch.equal(pickle.loads(pickle.dumps(sc))(x), sc(x))
    model = create_model("resnet20").eval()
    clone = pickle.loads(pickle.dumps(model))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(clone(x), model(x))


def test_shortcut_options_change_only_the_projections() -> None:
    a, b, c = (count_params(meta_model("resnet20", shortcut=o)) for o in "ABC")
    assert a < b < c
    # B adds a 1×1 conv + BN at the two stage transitions: 16→32 and 32→64.
    assert b - a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    # C projects on every one of the 9 blocks.
    model_c = meta_model("resnet20", shortcut="C")
    assert isinstance(model_c, ResNet)
    assert all(blk.downsample is not None for blk in model_c.blocks())


def test_resnet34_option_b_vs_c() -> None:
    b = meta_model("resnet34")
    c = meta_model("resnet34", shortcut="C")
    assert count_params(c) > count_params(b)
    assert isinstance(b, ResNet)
    assert sum(blk.downsample is not None for blk in b.blocks()) == 3


def test_option_a_exports_to_onnx_and_runs(tmp_path: object) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import io
    import warnings

    model = create_model("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=True, verbose=False, dynamic_shapes=None)
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), model(x).detach(), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- options
def test_num_classes_and_in_channels() -> None:
    model = create_model("resnet18", num_classes=5, in_channels=1)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 5)


def test_zero_init_residual_makes_blocks_identities() -> None:
    model = create_model("resnet20", zero_init_residual=True)
    assert isinstance(model, ResNet)
    block = model.layer1[1]
    assert isinstance(block, BasicBlock)
    assert torch.count_nonzero(block.bn2.weight) == 0
    x = torch.rand(2, 16, 8, 8)  # non-negative, like the output of the previous ReLU
    assert torch.equal(block(x), x)
    preact = create_model("preact_resnet20", zero_init_residual=True)
    assert isinstance(preact, ResNet)
    assert all(torch.count_nonzero(b.last_conv().weight) == 0 for b in preact.blocks())


def test_middle_kernel_size() -> None:
    model = meta_model("resnet50", kernel_size=5)
    assert isinstance(model, ResNet)
    assert model.layer1[0].conv2.kernel_size == (5, 5)
    assert model.layer1[0].conv1.kernel_size == (1, 1)  # the 1×1 convs stay 1×1
    out = create_model("resnet20", kernel_size=5)(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_width_multiplier() -> None:
    model = meta_model("resnet20", width=2.0)
    assert isinstance(model, ResNet)
    assert model.conv1.out_channels == 32
    assert model.num_features == 128


def test_keras_finetune_head() -> None:
    model = create_model("resnet50", head="mlp", num_classes=10)
    assert isinstance(model, ResNet)
    kinds = [type(m).__name__ for m in model.fc]
    assert kinds == ["Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert model.fc[0].p == 0.5
    assert model.fc[3].p == 0.5
    head = count_params(model.fc)
    assert head == 2048 * 200 + 200 + 200 * 10 + 10
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_reset_classifier_keeps_everything_else() -> None:
    # Shapes only: the big nets on the meta device (the new head made there too).
    for name, kw, device in (
        ("resnet20", {}, "cpu"),
        ("resnet50", {"head": "mlp"}, "meta"),
        ("vgg11", {}, "meta"),
    ):
        with torch.device(device):
            model = create_model(name, **kw) if device == "cpu" else meta_model(name, **kw)
            before = {k: v.shape for k, v in model.state_dict().items()}
            model.reset_classifier(3)  # type: ignore[operator]
            after = model.state_dict()
            changed = {k for k in after if k not in before or after[k].shape != before[k]}
            assert changed
            assert all(k.endswith(("weight", "bias")) for k in changed)
            assert len(changed) == 2  # only the last linear layer
            assert model.spec.num_classes == 3
            x = torch.randn(2, 3, 32, 32)
            assert model(x).shape == (2, 3)


def test_intermediate_stage_outputs() -> None:
    model = create_model("resnet50").eval()
    assert isinstance(model, ResNet)
    feats = model.forward_stages(torch.randn(1, 3, 64, 64))
    assert list(feats) == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert [tuple(f.shape[1:]) for f in feats.values()] == [
        (64, 16, 16),
        (256, 16, 16),
        (512, 8, 8),
        (1024, 4, 4),
        (2048, 2, 2),
    ]
    cifar = create_model("preact_resnet20").eval()
    assert isinstance(cifar, ResNet)
    x = torch.randn(1, 3, 32, 32)
    feats = cifar.forward_stages(x)
    assert [f.shape[-1] for f in feats.values()] == [32, 32, 16, 8]
    torch.testing.assert_close(feats["layer3"], cifar.forward_features(x))


def test_preact_structure() -> None:
    model = meta_model("preact_resnet164")
    assert isinstance(model, ResNet)
    assert model.bn1 is None
    assert model.final_norm is not None
    assert model.spec.depth == 164


def test_vgg_layout() -> None:
    model = meta_model("vgg16_bn")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    assert get_entry("vgg16_bn").family == "vgg"


# ---------------------------------------------------------------- stochastic depth
def test_drop_path_changes_no_parameter_and_no_output_when_off() -> None:
    plain = create_model("resnet20")
    zero = create_model("resnet20", drop_path=0.0)
    on = create_model("resnet20", drop_path=0.2)
    assert count_params(plain) == count_params(on) == 269_722
    assert plain.state_dict().keys() == on.state_dict().keys()
    assert not any(type(m).__name__ == "DropPath" for m in zero.modules())
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    zero.load_state_dict(plain.state_dict())
    zero.train()
    plain.train()
    assert torch.equal(plain(x), zero(x))


def test_drop_path_decays_linearly_and_is_identity_at_eval() -> None:
    model = create_model("resnet20", drop_path=0.3)
    assert isinstance(model, ResNet)
    rates = [block.drop_path.p for block in model.blocks() if block.drop_path is not None]
    assert rates == pytest.approx([0.3 * (i + 1) / 9 for i in range(9)])  # Huang et al.: l/L
    plain = create_model("resnet20")
    plain.load_state_dict(model.state_dict())
    x = torch.randn(3, 3, 32, 32)
    model.eval()
    plain.eval()
    assert torch.equal(model(x), plain(x))
    with pytest.raises(ValueError, match="plain net"):
        create_model("plain20", drop_path=0.1)


def test_drop_path_drops_at_its_rate_in_training() -> None:
    from resnetlab.models.blocks import DropPath

    drop = DropPath(0.3).train()
    torch.manual_seed(0)
    out = drop(torch.ones(20_000, 2, 3, 3))
    dropped = (out == 0).all(dim=(1, 2, 3)).float().mean()
    assert float(dropped) == pytest.approx(0.3, abs=0.015)
    kept = out[(out != 0).any(dim=(1, 2, 3))]
    assert torch.allclose(kept, torch.full_like(kept, 1 / 0.7))  # expectation unchanged
    assert torch.equal(drop.eval()(out), out)


# ---------------------------------------------------------------- backbone features (timm's API)
@pytest.mark.parametrize(
    ("name", "side", "channels", "reductions", "modules"),
    [
        ("resnet20", 32, [16, 16, 32, 64], [1, 1, 2, 4], ["relu", "layer1", "layer2", "layer3"]),
        (
            "resnet50",
            64,
            [64, 256, 512, 1024, 2048],
            [2, 4, 8, 16, 32],
            ["relu", "layer1", "layer2", "layer3", "layer4"],
        ),
        (
            "preact_resnet20",
            32,
            [16, 16, 32, 64],
            [1, 1, 2, 4],
            ["conv1", "layer1", "layer2", "final_relu"],
        ),
        (
            "plain34",
            64,
            [64, 64, 128, 256, 512],
            [2, 4, 8, 16, 32],
            ["relu", "layer1", "layer2", "layer3", "layer4"],
        ),
        (
            "resnext50_32x4d",
            64,
            [64, 256, 512, 1024, 2048],
            [2, 4, 8, 16, 32],
            ["relu", "layer1", "layer2", "layer3", "layer4"],
        ),
        (
            "vgg11_bn",
            32,
            [64, 128, 256, 512, 512],
            [1, 2, 4, 8, 16],
            ["features.2", "features.6", "features.13", "features.20", "features.27"],
        ),
    ],
)
def test_features_info_and_shapes(
    name: str, side: int, channels: list[int], reductions: list[int], modules: list[str]
) -> None:
    with torch.device("meta"):  # shapes only
        net = create_model(name, features_only=True)
        feats = net(torch.randn(2, 3, side, side))
    info = net.feature_info
    assert (info.channels(), info.reduction(), info.module_name()) == (
        channels,
        reductions,
        modules,
    )
    assert [tuple(f.shape) for f in feats] == [
        (2, c, side // r, side // r) for c, r in zip(channels, reductions, strict=True)
    ]


def test_features_out_indices_choose_levels_and_prune_the_rest() -> None:
    with torch.device("meta"):
        net = create_model("resnet50", features_only=True, out_indices=(1, -2))
        feats = net(torch.randn(1, 3, 64, 64))
    info = net.feature_info
    assert info.out_indices == (1, 3) and len(info) == 2
    assert (info.channels(), info.reduction(), info.channels(1)) == ([256, 1024], [4, 16], 1024)
    assert info.get_dicts()[0] == {"num_chs": 256, "reduction": 4, "module": "layer1"}
    tops = {k.split(".")[0] for k in net.state_dict()}
    assert tops == {"conv1", "bn1", "layer1", "layer2", "layer3"}  # no layer4, no fc
    assert [f.shape[1] for f in feats] == [256, 1024]


@pytest.mark.parametrize("name", ["resnet18", "resnet20", "preact_resnet20", "resnext50_32x4d"])
def test_features_load_a_full_checkpoint_and_match_its_stages(name: str) -> None:
    """The backbone weights of a whole model's state dict load (head keys dropped), and
    the features are the full model's own stage outputs."""
    from resnetlab.infer.folding import randomize_batchnorm

    torch.manual_seed(0)
    full = randomize_batchnorm(create_model(name, num_classes=7))
    net = create_model(name, features_only=True, out_indices=(1, 2, 3)).eval()
    assert net.load_state_dict(full.state_dict())  # strict: no key missing
    side = 32 if model_spec(name).stem == "cifar" else 64
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        stages = full.forward_stages(x)
        feats = net(x)
    for f, key in zip(feats, ["layer1", "layer2", "layer3"], strict=True):
        torch.testing.assert_close(f, stages[key], rtol=0, atol=0)


def test_features_refuse_another_architectures_checkpoint() -> None:
    with torch.device("meta"):
        net = create_model("resnet34", features_only=True)
        other = create_model("resnet18").state_dict()
    with pytest.raises(RuntimeError, match="Missing key"):
        net.load_state_dict(other, assign=True)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("resnet20", {"out_indices": (4,)}, "out_indices 4 is out of range: resnet20 has 4"),
        ("resnet50", {"out_indices": (-6,)}, "out_indices -6 is out of range: resnet50 has 5"),
        ("resnet20", {"out_indices": (1, -3)}, "names a level twice"),
        ("resnet20", {"out_indices": ()}, "non-empty sequence of level numbers"),
        ("resnet20", {"out_indices": (1.5,)}, "non-empty sequence of level numbers"),
        ("resnet20", {"out_indices": 2}, "non-empty sequence of level numbers"),
    ],
)
def test_features_out_indices_are_checked(
    name: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match="out_indices") as err:
        create_model(name, features_only=True, **kwargs)  # type: ignore[arg-type]
    text = str(err.value)
    assert message in text and "\n" not in text
    assert "0 relu, 1 layer1" in text or "twice" in text  # the levels are listed


def test_out_indices_need_features_only() -> None:
    with pytest.raises(ValueError, match="give features_only=True"):
        create_model("resnet20", out_indices=(1,))
