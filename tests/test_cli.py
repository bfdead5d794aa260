import json

import yaml
from typer.testing import CliRunner

from conftest import tiny_config
from privlab.cli import app

runner = CliRunner()


def _write(tmp_path, **overrides):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_config(**overrides)))
    return path


def test_help_everywhere():
    for args in ([], ["run"], ["demo"], ["list"], ["report"]):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, args
        assert "Usage" in result.output


def test_list_shows_every_registered_component():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in (
        "digits",
        "mnist5k",
        "wide_resnet",
        "pgd_at",
        "trades",
        "dist_at",
        "dp_sgd",
        "adversarial_confidence",
        "inference_network",
    ):
        assert name in result.output


def test_run_then_report_and_compare(tmp_path):
    cfg = _write(tmp_path)
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "run",
            str(cfg),
            "--out",
            str(out),
            "--set",
            "targets.train.epochs=2",
            "--seed",
            "3",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["seeds"] == [3] and report["config"]["targets"]["train"]["epochs"] == 2
    assert [run["seed"] for run in report["studies"]["targets"]["runs"]] == [3]
    (out / "report.html").unlink()
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0 and (out / "report.html").is_file()
    result = runner.invoke(
        app, ["report", str(out), str(out), "--html", str(tmp_path / "c.html"), "--markdown"]
    )
    assert result.exit_code == 0, result.output
    assert "±" in result.output and (tmp_path / "c.html").is_file()


def test_config_typo_exits_2_and_names_the_key(tmp_path):
    cfg = tiny_config()
    cfg["targets"]["trian"] = cfg["targets"].pop("train")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "unknown key 'targets.trian'" in result.output


def test_bad_device_and_missing_report_are_clear(tmp_path):
    result = runner.invoke(app, ["run", str(_write(tmp_path)), "--device", "tpu"])
    assert result.exit_code == 2 and "invalid device" in result.output
    result = runner.invoke(app, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "report.json" in result.output


def test_shadow_heads_command_writes_resumes_and_refuses_foreign_shards(tmp_path, monkeypatch):
    import torch

    import privlab.studies.reconstruction.transfer as transfer

    labels = torch.arange(60) % 10
    fake = transfer.TransferData(
        features=torch.randn(60, 8, generator=torch.Generator().manual_seed(0)),
        labels=labels,
        images=torch.zeros(60, 1, 28, 28),
        extractor=None,  # type: ignore[arg-type]
    )
    monkeypatch.setattr(transfer, "transfer_setting", lambda **_: fake)
    args = ["shadow-heads", "--out", str(tmp_path / "s"), "--heads", "30", "--shard-size", "16"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "30 heads in 2 shards" in first.output
    assert runner.invoke(app, args).exit_code == 0  # resumed: nothing to do
    foreign = runner.invoke(app, [*args, "--seed", "5"])
    assert foreign.exit_code == 2 and "shard of another configuration" in foreign.output
    # a bad backend or address is one line before any work
    bad = runner.invoke(app, [*args, "--address", "10.0.0.1:6379"])
    assert bad.exit_code == 2 and "an address needs backend 'ray'" in bad.output
    bad = runner.invoke(app, [*args, "--backend", "spark"])
    assert bad.exit_code == 2 and "unknown backend 'spark'" in bad.output
