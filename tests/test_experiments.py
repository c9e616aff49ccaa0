"""`resnetlab reproduce`: every experiment end to end on a tiny budget (the shipped sample,
a few steps), the shared run store, resuming, and the report's structure and numbers."""

from __future__ import annotations

import json
import math
import random
import shutil
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from browser import needs_chromium, screenshot_colours
from resnetlab.cli import main
from resnetlab.experiments.degradation import findings as degradation_findings
from resnetlab.experiments.responses import findings as response_findings
from resnetlab.experiments.responses import response_stds
from resnetlab.experiments.runs import Budget, digest, read_run, run_job
from resnetlab.runtime.config import resolve_config
from resnetlab.train.fitting import fit

TINY = [
    "--data",
    "sample",
    "--iterations",
    "4",
    "--batch-size",
    "32",
    "--limit-per-class",
    "12",
    "--precision",
    "fp32",
]


def _reproduce(out: Path, *args: str) -> int:
    return main(["reproduce", *args, *TINY, "--out", str(out)])


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")


def _check_report(folder: Path, title: str) -> dict[str, object]:
    md = (folder / "report.md").read_text()
    assert md.startswith(f"# {title}")
    assert "## How these numbers were made" in md
    assert "- command: `resnetlab reproduce" in md and "- code: resnetlab" in md
    assert "- hardware:" in md and "- data:" in md and "- seeds:" in md
    page = _Collect()
    page.feed((folder / "report.html").read_text())
    assert page.tags.count("table") >= 2 and "h1" in page.tags
    for src in page.images:  # every chart the page shows exists, as SVG and PNG
        assert (folder / src).is_file() and (folder / src).with_suffix(".png").is_file()
    numbers: dict[str, object] = json.loads((folder / "results.json").read_text())
    assert numbers["provenance"]
    return numbers


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reproduce")
    assert _reproduce(out, "degradation", "--depths", "20", "32", "--seeds", "0") == 0
    return out


def test_degradation_report(store: Path) -> None:
    numbers = _check_report(store / "degradation", "Degradation")
    models = numbers["models"]
    assert isinstance(models, dict)
    assert set(models) == {"plain20", "plain32", "resnet20", "resnet32"}
    assert models["resnet32"]["params"] == 464_154  # the paper's 0.46M
    for model, entry in models.items():
        (run_dir,) = (store / "runs").glob(f"{model}-s0-*")
        run = json.loads((run_dir / "results.json").read_text())
        assert entry["test_error"] == [pytest.approx(100 - run["test"]["top1"])]
        assert entry["best_val_error"] == [pytest.approx(100 - run["best_val_top1"])]
        assert (run_dir / "steps.csv").is_file()
    md = (store / "degradation" / "report.md").read_text()
    assert "plain-32 ends at" in md and "ResNet-32 ends at" in md
    assert (store / "degradation" / "degradation.svg").stat().st_size > 1000


def test_experiments_share_runs(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in (store / "runs").iterdir())
    assert _reproduce(store, "cifar-table", "--depths", "20", "32", "--seeds", "0") == 0
    assert _reproduce(store, "responses", "--depths", "20", "32") == 0
    assert sorted(p.name for p in (store / "runs").iterdir()) == before  # nothing retrained
    assert "training in" not in capsys.readouterr().out
    table = _check_report(store / "cifar-table", "CIFAR-10 test error")
    assert table["models"]["resnet20"]["paper"] == "8.75"  # type: ignore[index]
    responses = _check_report(store / "responses", "Layer responses")
    stds = responses["stds"]
    assert isinstance(stds, dict)
    assert len(stds["resnet20"]) == 19 and len(stds["plain32"]) == 31  # 3×3 layers
    assert all(v > 0 for v in stds["resnet32"])


def test_shortcuts_report(store: Path) -> None:
    assert _reproduce(store, "shortcuts", "--seeds", "0") == 0
    numbers = _check_report(store / "shortcuts", "Shortcut options")
    variants = numbers["variants"]
    assert isinstance(variants, dict)
    assert list(variants) == ["plain", "A", "B", "C"]
    p = {v: variants[v]["params"] for v in variants}
    assert p["plain"] == p["A"] < p["B"] < p["C"]  # A adds nothing; C projects everywhere


def test_interrupted_job_resumes(tmp_path: Path, log_lines: list[str]) -> None:
    budget = Budget(
        protocol="step",
        iterations=6,
        batch_size=32,
        data="sample",
        limit_per_class=12,
        precision="fp32",
    )
    cfg = budget.config("resnet20", 0, tmp_path)
    stopped = fit(
        cfg.__class__(
            **{
                **cfg.__dict__,
                "run": cfg.run.__class__(**{**cfg.run.__dict__, "time_limit_min": 1e-9}),
            }
        ),
    )
    assert stopped.status == "time" and stopped.epochs_done == 0
    assert read_run(stopped.run_dir, "resnet20", 0) is None  # not finished: not reused
    lines = log_lines
    record = run_job(budget, "resnet20", 0, tmp_path)
    assert record.run_dir == stopped.run_dir
    assert any(line.startswith("resnet20 seed 0: resuming") for line in lines)
    assert record.results["status"] == "completed"
    assert int(record.steps[-1]["step"]) == 6
    # A run made before a setting existed (no such key in its config.yaml, another digest
    # in its folder name) is still found, not trained again.
    old = record.run_dir.with_name("resnet20-s0-0ldd1ges7")
    record.run_dir.rename(old)
    saved = yaml.safe_load((old / "config.yaml").read_text())
    del saved["run"]["compile"]
    del saved["optim"]["label_smoothing"]
    (old / "config.yaml").write_text(yaml.safe_dump(saved))
    lines.clear()
    again = run_job(budget, "resnet20", 0, tmp_path)
    assert again.run_dir == old and lines == [f"resnet20 seed 0: finished earlier in {old}"]


def test_reproduce_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _reproduce(tmp_path, "degradation", "--depths", "21") == 2
    assert "not 6n+2" in capsys.readouterr().err
    assert main(["reproduce", "cifar-table", "--paper", "--iterations", "9"]) == 2
    assert "not both" in capsys.readouterr().err
    assert _reproduce(tmp_path, "degradation", "--set", "optim.colour=red") == 2
    assert "unknown key optim.colour" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_response_stds_are_per_channel_stds() -> None:
    torch.manual_seed(0)
    from resnetlab.models.registry import create_model

    model = create_model("resnet20", num_classes=10)
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(6, 3, 32, 32)
    stds = dict(response_stds(model, [(x[:4], None), (x[4:], None)]))
    captured: list[torch.Tensor] = []
    model.layer2[0].bn2.register_forward_hook(lambda _m, _i, o: captured.append(o))
    model(x)
    assert len(stds) == 19 and "layer2.0.bn2" in stds and "bn1" in stds
    out = captured[0].detach().double()
    want = out.transpose(0, 1).reshape(out.shape[1], -1).std(dim=1, unbiased=False).mean()
    assert stds["layer2.0.bn2"] == pytest.approx(float(want), rel=1e-6)


def test_findings_follow_the_numbers() -> None:
    def entry(train: float) -> dict[str, list[float]]:
        return {"train_error": [train], "test_error": [train + 5]}

    shown = degradation_findings(
        {"plain20": entry(10), "plain56": entry(14), "resnet20": entry(10), "resnet56": entry(7)}
    )
    assert shown.count("as in the paper") == 2 and "NOT" not in shown
    missed = degradation_findings(
        {"plain20": entry(10), "plain56": entry(9), "resnet20": entry(10), "resnet56": entry(12)}
    )
    assert missed.count("NOT as in the paper") == 2
    assert "NOT smaller" in response_findings({"plain20": [1.0], "resnet20": [2.0]})


@needs_chromium
def test_html_report_renders_in_chromium(store: Path, tmp_path: Path) -> None:
    page = (store / "degradation" / "report.html").resolve()
    colours = screenshot_colours(page.as_uri(), tmp_path / "profile", 1000, 1600)
    assert colours is None or colours > 50  # text, tables and charts, not a blank page


# ---------------------------------------------------------------------- landscape, lesion
def test_landscape_and_lesion_reports(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--grid", "3", "--images", "64", "--draws", "2", "--swaps", "2"]
    # Each experiment takes only its own options (--grid: landscape's; --draws/--swaps: lesion's).
    assert _reproduce(store, "landscape", "--depths", "20", *extra[:4]) == 0
    numbers = _check_report(store / "landscape", "Loss landscapes")
    grids = numbers["grids"]
    assert isinstance(grids, dict) and set(grids) == {"plain20", "resnet20"}
    for model, g in grids.items():
        assert len(g["loss2d"]) == 3 and all(len(row) == 3 for row in g["loss2d"])
        assert g["loss1d"][1] == pytest.approx(g["loss2d"][1][1])  # both pass through θ
        assert (store / "landscape" / f"{model}.npz").is_file()
        assert len((store / "landscape" / f"{model}.csv").read_text().splitlines()) == 1 + 3 + 9
    assert _reproduce(store, "lesion", "--depths", "32", *extra[2:]) == 0
    lesion = _check_report(store / "lesion", "Lesion study")
    models = lesion["models"]
    assert isinstance(models, dict) and set(models) == {"plain32", "resnet32"}
    single = models["resnet32"]["single"]
    assert len(single) == 15 and sum(s["downsampling"] for s in single) == 2
    capsys.readouterr()
    assert _reproduce(store, "lesion", "--depths", "32", *extra[2:]) == 0  # the report again
    assert capsys.readouterr().out.count("read from the earlier report") == 2
    assert json.loads((store / "lesion" / "results.json").read_text())["models"] == models
    assert lesion["path_lengths"] == {  # type: ignore[comparison-overlap]
        "blocks": 15,
        "counts": [math.comb(15, k) for k in range(16)],
        "total": 2**15,
    }


def test_filter_normalised_directions() -> None:
    from resnetlab.experiments.loss_surface import filter_normalized_direction
    from resnetlab.models.registry import create_model

    model = create_model("resnet20")
    dirs = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    for p, d in zip(model.parameters(), dirs, strict=True):
        assert d.shape == p.shape
        if p.dim() <= 1:  # biases and BN parameters do not move
            assert not d.any()
        else:  # each filter of d, measured in units of the same filter of θ, has norm 1
            ratio = d.flatten(1).norm(dim=1) / p.detach().flatten(1).norm(dim=1)
            assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-5)
    again = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(dirs, again, strict=True))


def test_partial_grid_resumes_along_the_same_directions(tmp_path: Path) -> None:
    from resnetlab.experiments.loss_surface import Grid, surface
    from resnetlab.models.registry import create_model
    from resnetlab.runtime.execution import choose

    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    batches = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))]
    place = choose("cpu", "fp32")
    before = [p.detach().clone() for p in model.parameters()]
    path = tmp_path / "g.npz"
    full = surface(model, batches, place, points=3, span=0.5, seed=1, save_to=path)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    partial = Grid.load(path, 3, 0.5)
    partial.loss2d[1:] = float("nan")
    partial.loss1d[0] = float("nan")
    partial.save(path)
    resumed = surface(model, batches, place, points=3, span=0.5, seed=1, save_to=path)
    assert resumed.done
    assert resumed.loss2d == pytest.approx(full.loss2d, rel=1e-6)
    assert resumed.loss1d == pytest.approx(full.loss1d, rel=1e-6)
    assert Grid.load(path, 5, 0.5).coords.shape == (5,)  # another grid: starts afresh


def test_lesion_mechanics() -> None:
    from resnetlab.experiments import block_lesions as V
    from resnetlab.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        whole = model(x)
        with V.lesioned(model, set()):
            assert torch.equal(model(x), whole)  # deleting nothing changes nothing
        with V.lesioned(model, {1}):
            skipped = model(x)
        stem = model.forward_stem(x)
        manual = model.layer1[2](model.layer1[0](stem))  # block 1 is the identity
        for stage in (model.layer2, model.layer3):
            manual = stage(manual)
        assert torch.allclose(skipped, model.forward_head(manual), atol=1e-6)
        assert torch.equal(model(x), whole)  # restored on exit
        blocks = model.blocks()
        assert [V.is_downsampling(b) for b in blocks].count(True) == 2
        order = V.random_swaps(model, 3, random.Random(0))
        assert sorted(order) == list(range(9)) and order != list(range(9))
        with (
            pytest.raises(ValueError, match="stage"),
            V.lesioned(model, order=[3, 1, 2, 0, 4, 5, 6, 7, 8]),
        ):
            pass
    plain = create_model("plain20")
    assert isinstance(V.shortcut_of(plain.layer2[0]), V.ZeroPadShortcut)
    for n in (9, 27, 54):
        counts = V.path_length_counts(n)
        assert sum(counts) == 2**n and V.mean_path_length(n) == n / 2


def test_budget_protocol_schedule() -> None:
    """The default protocol: one-cycle over the epochs (linear warm-up over the first fifth to
    0.2, linear decay to 0), Nesterov, weight decay 5e-4; the paper's nets and split."""
    from resnetlab.train.optim import LRSchedule

    budget = Budget(epochs=5, data="sample")
    cfg = budget.config("resnet56", 0, Path("store"))
    assert (cfg.schedule.name, cfg.run.epochs, cfg.run.iterations) == ("warmup-linear", 5, None)
    assert cfg.optim.nesterov and cfg.optim.weight_decay == 5e-4 and cfg.optim.lr == 0.2
    assert cfg.data.batch_size == 128 and cfg.data.val_fraction == 0.1
    assert cfg.schedule.warmup_lr is None and cfg.model.options == {}  # option A
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = LRSchedule(
        opt,
        cfg.schedule,
        base_lr=cfg.optim.lr,
        steps_per_epoch=100,
        total_steps=500,
        model_depth=56,
    )
    assert sched.lr_at(0) == pytest.approx(0.2 / 100)  # warm-up: 1 epoch of 5
    assert sched.lr_at(49) == pytest.approx(0.1)
    assert sched.lr_at(99) == pytest.approx(0.2)  # the peak
    assert sched.lr_at(300) == pytest.approx(0.1)  # halfway down the decay
    assert sched.lr_at(500) == pytest.approx(0.0)


def test_paper_protocol_is_the_papers_schedule() -> None:
    paper = Budget(protocol="step").config("resnet110", 0, Path("store"))
    recipe = resolve_config("paper-cifar", {})
    assert paper.schedule == recipe.schedule  # lr 0.1, ÷10 at 32k and 48k, §4.2 warm-up
    assert paper.optim == recipe.optim and paper.run.iterations == 64000
    assert paper.schedule.milestones == (32000, 48000) and paper.schedule.warmup_lr == 0.01
    cut = Budget(protocol="step", iterations=1000).config("resnet20", 0, Path("store"))
    assert cut.schedule.milestones == (500, 750) and cut.run.iterations == 1000


def test_runs_take_the_fastest_path_and_compiling_is_not_another_run() -> None:
    """Every protocol trains with ``run.compile: auto`` (compiled where it measured faster);
    whether a step ran compiled does not change what the run is, so a run made eager (before
    reproduce compiled) is the same run and keeps its folder."""
    for budget in (Budget(), Budget(protocol="step")):
        cfg = budget.config("resnet20", 0, Path("store"))
        assert cfg.run.compile == "auto"
        eager = replace(cfg, run=replace(cfg.run, compile=False, compile_mode="max-autotune"))
        assert digest(eager) == digest(cfg)
        assert digest(replace(cfg, run=replace(cfg.run, seed=1))) != digest(cfg)


def test_reproduce_protocol_options(tmp_path: Path) -> None:
    from resnetlab.cli import build_parser
    from resnetlab.cli.reproduce import request_from_args

    def budget(*args: str) -> Budget:
        argv = ["reproduce", "degradation", "--out", str(tmp_path), *args]
        ns = build_parser().parse_args(argv)
        ns.command_line = "resnetlab " + " ".join(argv)
        return request_from_args(ns).budget

    assert (budget().protocol, budget().epochs) == ("budget", 10)
    assert budget("--epochs", "3").epochs == 3
    assert budget("--paper").is_paper and budget("--paper").peak_lr == 0.1
    assert budget("--iterations", "800").iterations == 800
    with pytest.raises(ValueError, match="--epochs"):
        budget("--paper", "--epochs", "3")


def test_report_only_trains_nothing_and_names_what_is_missing(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(p.name for p in (store / "runs").iterdir())
    args = ["cifar-table", "--depths", "20", "32", "--seeds", "0", "1", "--report-only"]
    assert _reproduce(store, *args) == 0
    assert sorted(p.name for p in (store / "runs").iterdir()) == before  # nothing trained
    numbers = _check_report(store / "cifar-table", "CIFAR-10 test error")
    models = numbers["models"]
    assert isinstance(models, dict) and models["resnet20"]["seeds"] == [0]
    md = (store / "cifar-table" / "report.md").read_text()
    assert "left out of it:** resnet20 seed 1, resnet32 seed 1." in md
    assert "left out of the report: resnet20 seed 1, resnet32 seed 1" in capsys.readouterr().out
    assert _reproduce(tmp_path, "degradation", "--report-only") == 2
    assert "no finished runs for degradation" in capsys.readouterr().err


def test_earlier_report_runs_fold_into_a_new_report(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--previous`: the runs of a committed report stand in for a store that is gone, are
    not trained again, and are named as such; a run of the store wins over one of them."""
    table = ["cifar-table", "--depths", "20", "32", "--seeds", "0"]
    assert _reproduce(store, *table, "--report-only") == 0
    before = json.loads((store / "cifar-table" / "results.json").read_text())
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps(before))
    fresh = tmp_path / "elsewhere"
    assert _reproduce(fresh, *table, "--previous", str(earlier)) == 0
    assert not any((fresh / "runs").glob("*"))  # nothing trained
    assert "training in" not in capsys.readouterr().out
    after = _check_report(fresh / "cifar-table", "CIFAR-10 test error")
    assert after["models"] == before["models"]
    md = (fresh / "cifar-table" / "report.md").read_text()
    assert f"2 runs from the earlier report `{earlier}` (not trained again" in md
    runs = after["provenance"]["runs"]  # type: ignore[index]
    assert {r["earlier_report"] for r in runs} == {str(earlier)}

    # A report written before runs carried their own numbers: read from its per-model lists.
    for r in before["provenance"]["runs"]:
        for key in ("test_top1", "best_val_top1", "images_per_s", "status", "epochs", "iterations"):
            r.pop(key)
    earlier.write_text(json.dumps(before))
    assert _reproduce(fresh, *table, "--report-only", "--previous", str(earlier)) == 0
    assert (
        json.loads((fresh / "cifar-table" / "results.json").read_text())["models"]
        == (after["models"])
    )
    # Nor their epochs: the protocol line then names none, rather than "0 epochs"; nor their
    # speed: the speed line says so rather than leaving the models out.
    md = (fresh / "cifar-table" / "report.md").read_text()
    assert "(0 epochs)" not in md
    assert "ResNet-20, ResNet-32: not recorded (by the earlier report its runs came from)." in md

    # The store's own run wins over the earlier report's (it has its curves and weights).
    doctored = json.loads(earlier.read_text())
    doctored["models"]["resnet20"]["test_error"] = [99.0]
    earlier.write_text(json.dumps(doctored))
    assert _reproduce(store, *table, "--report-only", "--previous", str(earlier)) == 0
    mine = json.loads((store / "cifar-table" / "results.json").read_text())
    assert mine["models"]["resnet20"]["test_error"] != [99.0]


def test_report_names_the_code_its_runs_were_trained_with(store: Path, tmp_path: Path) -> None:
    """Each run records the code it was trained with; a report written later by other code
    (``--report-only`` after a commit) says both, rather than passing its own off as theirs."""
    table = ["cifar-table", "--depths", "20", "--seeds", "0"]
    assert _reproduce(store, *table) == 0
    [run] = [p for p in (store / "runs").iterdir() if p.name.startswith("resnet20-s0")]
    results = json.loads((run / "results.json").read_text())
    assert results["code"].startswith("resnetlab ")
    md = (store / "cifar-table" / "report.md").read_text()
    assert "trained with" not in md  # the same code wrote the report
    copy = tmp_path / "store"
    shutil.copytree(store / "runs", copy / "runs")
    results["code"] = "resnetlab 0.0.9 (git 1234567)"
    (copy / "runs" / run.name / "results.json").write_text(json.dumps(results))
    assert _reproduce(copy, *table, "--report-only") == 0
    md = (copy / "cifar-table" / "report.md").read_text()
    assert "(this report); its runs were trained with resnetlab 0.0.9 (git 1234567)" in md
    numbers = json.loads((copy / "cifar-table" / "results.json").read_text())
    assert numbers["provenance"]["runs"][0]["code"] == "resnetlab 0.0.9 (git 1234567)"


def test_earlier_report_must_match(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = ["cifar-table", "--depths", "20", "--seeds", "0"]
    assert _reproduce(store, *table, "--report-only") == 0
    earlier = store / "cifar-table" / "results.json"
    other = [a if a != "4" else "5" for a in TINY]  # --iterations 5, not 4
    code = main(["reproduce", *table, *other, "--out", str(tmp_path), "--previous", str(earlier)])
    assert code == 2
    err = capsys.readouterr().err
    assert "trained under another protocol (iterations 4 there, 5 here)" in err
    assert len(err.strip().splitlines()) == 1
    assert _reproduce(tmp_path, "degradation", "--previous", str(earlier)) == 2
    assert "is a report of cifar-table, not of degradation" in capsys.readouterr().err
    degradation = store / "degradation" / "results.json"
    assert _reproduce(tmp_path, "degradation", "--previous", str(degradation)) == 2
    assert "degradation's report reads each run's curves" in capsys.readouterr().err
    for text, why in (("{", "not a report's results.json"), ("{}", "it has no provenance")):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        assert _reproduce(tmp_path, *table, "--previous", str(bad)) == 2
        assert why in capsys.readouterr().err
    assert _reproduce(tmp_path, *table, "--previous", str(tmp_path / "none.json")) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing was trained for a refused request


def test_table6_findings_name_the_step_that_does_not_fall() -> None:
    from resnetlab.experiments.cifar_table import findings as table_findings

    def entry(*errors: float) -> dict[str, list[float]]:
        return {"test_error": list(errors)}

    falling = table_findings({"resnet20": entry(16.5), "resnet56": entry(15.3)})
    assert "at every step, as in the paper" in falling
    # Two depths: the one step is the whole span, said once.
    rising = table_findings({"resnet20": entry(20.5), "resnet56": entry(23.0)})
    assert "ResNet-56 is 2.50 points above ResNet-20." in rising
    assert "From ResNet-20" not in rising
    tie = table_findings(
        {
            "resnet20": entry(16.6, 16.4),
            "resnet44": entry(15.3, 15.2),
            "resnet56": entry(15.3, 15.3),
            "resnet110": entry(14.7),
        }
    )
    assert "NOT better at every step" in tie
    assert "ResNet-56 is 0.05 points above ResNet-44" in tie
    assert "largest std between seeds of one depth is 0.14" in tie
    assert "From ResNet-20 to ResNet-110 the error falls by 1.80 points" in tie
