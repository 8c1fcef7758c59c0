"""Issue 19, items 10, 15, 18: records with wrong types, missing fields or absurd values skip their run with a
warning naming the file and line (never a traceback), memory stays bounded by the data present, and every
JSON bnexp writes is strict."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bnexp.cli import app

from .rundata import write_experiment

RUN = "lenet5-bn_lr1x_s0"


def _edit_line(path, index, change):
    lines = path.read_text().splitlines()
    record = json.loads(lines[index])
    change(record)
    lines[index] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")


def _first(path, event):
    return next(i for i, line in enumerate(path.read_text().splitlines()) if json.loads(line).get("event") == event)


def _set(key, value):
    return lambda record: record.__setitem__(key, value)


DAMAGE = {
    "loss is a string": ("metrics.jsonl", "train", _set("loss", "abc"), "field 'loss'"),
    "step is a string": ("metrics.jsonl", "train", _set("step", "x"), "field 'step'"),
    "step of 4e9": ("metrics.jsonl", "train", _set("step", 4_000_000_000), "field 'step'"),
    "a step that skips ahead": ("metrics.jsonl", "train", _set("step", 100_000), "does not follow"),
    "eval test_acc a string": ("metrics.jsonl", "eval", _set("test_acc", "0.9"), "field 'test_acc'"),
}


# list, report and plot read runs through one checker (results.load_run): every damage through the two quick
# commands, and plot (seconds of drawing each) once, to show it warns and draws the rest
CASES = [(command, case) for case in DAMAGE for command in ("list", "report")] + [("plot", "a step that skips ahead")]


@pytest.mark.parametrize(("command", "case"), CASES)
def test_damaged_log_records_skip_the_run_with_a_warning(tmp_path, case, command):
    exp = write_experiment(tmp_path / "results")
    name, event, change, words = DAMAGE[case]
    path = exp / RUN / name
    _edit_line(path, _first(path, event), change)
    result = CliRunner().invoke(app, [command, str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    assert f"{path}:" in result.output and words in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ({"status": "completed", "final_test_acc": "0.9"}, "field 'final_test_acc'"),
        ({"status": "completed", "time_to_threshold": {"0.9": {"step": "x"}}}, "time_to_threshold.0.9.step"),
    ],
)
def test_a_summary_with_wrong_types_skips_the_run(tmp_path, content, words):
    exp = write_experiment(tmp_path / "results")
    (exp / RUN / "summary.json").write_text(json.dumps(content))
    result = CliRunner().invoke(app, ["report", str(tmp_path / "results")])
    assert result.exit_code == 0 and words in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "commands"),
    [
        ([], ("list", "report", "plot")),  # plot once, as above
        ({"result": 5}, ("list", "report")),
        ({"result": {"rows": [{"mode": 3}]}}, ("list", "report")),
    ],
)
def test_a_malformed_analysis_skips_the_run(tmp_path, content, commands):
    exp = write_experiment(tmp_path / "results")
    (exp / RUN / "analyses").mkdir()
    (exp / RUN / "analyses" / "eval_modes.json").write_text(json.dumps(content))
    for command in commands:
        result = CliRunner().invoke(app, [command, str(tmp_path / "results")])
        assert result.exit_code == 0 and "eval_modes.json" in result.output and "Traceback" not in result.output


def test_a_probe_record_missing_a_field_skips_the_run(tmp_path):
    exp = write_experiment(tmp_path / "results")
    with (exp / RUN / "probes.jsonl").open("a") as f:
        f.write(json.dumps({"probe": "landscape", "step": 3, "etas": [0.1]}) + "\n")
    result = CliRunner().invoke(app, ["report", str(tmp_path / "results")])
    assert result.exit_code == 0 and "probes.jsonl:" in result.output and "missing field" in result.output


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"hist": [1.0, None]}, "field 'hist'"),
        ({"hist": []}, "field 'hist'"),
        ({"hist": [1e308, 1e308]}, "field 'hist'"),
        ({"hist": [-1.0, 2.0]}, "field 'hist'"),
        ({"min": "low"}, "field 'min'"),
        ({"n": 0}, "no values"),
        ({"percentiles": {}}, "no values"),
    ],
)
def test_a_distribution_probe_that_figures_and_export_cannot_use_skips_the_run(tmp_path, change, words):
    """Issue 37, item 17: these passed the schema and then broke export and plot."""
    exp = write_experiment(tmp_path / "results")
    path = exp / RUN / "probes.jsonl"
    _edit_line(path, 0, lambda record: record.update(change))
    for command in (
        ["export", str(tmp_path / "results"), "--csv", str(tmp_path / "csv")],
        ["list", str(tmp_path / "results")],
    ):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
        assert "probes.jsonl:1" in result.output and words in result.output and "Traceback" not in result.output


def test_a_reference_series_whose_values_are_a_string_is_ignored_with_a_warning(tmp_path):
    exp = write_experiment(tmp_path / "results")
    (exp / "references.json").write_text(
        json.dumps(
            {"lenet5_lr1x": [{"file": "r.json", "key": "k", "quantity": "train_loss_per_step", "values": "2.3, 2.2"}]}
        )
    )
    result = CliRunner().invoke(app, ["report", str(tmp_path / "results")])
    assert result.exit_code == 0 and "references.json" in result.output and "Traceback" not in result.output


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_report_json_is_strict_even_with_nan_statistics(tmp_path):
    """Item 18: one run per variant gives NaN spreads; --json writes null."""
    exp = write_experiment(tmp_path / "results")
    for p in exp.glob("*_s1"):
        for f in p.iterdir():
            f.unlink()
        p.rmdir()
    result = CliRunner().invoke(app, ["report", str(tmp_path / "results"), "--json"])
    assert result.exit_code == 0
    data = _strict(result.stdout)
    assert data["experiments"][0]["name"] == "synthetic"
    assert "NaN" not in result.stdout


@pytest.mark.parametrize("segments", [[{"from_step": 0, "torch_threads": [1]}], [{"torch_threads": "2"}], [5]])
def test_a_summary_whose_segments_are_not_segments_skips_the_run(tmp_path, segments):
    """A foreign summary's segments feed the report's conditions: checked, never a traceback."""
    exp = write_experiment(tmp_path / "results")
    summary = json.loads((exp / RUN / "summary.json").read_text())
    (exp / RUN / "summary.json").write_text(json.dumps({**summary, "segments": segments}))
    result = CliRunner().invoke(app, ["report", str(tmp_path / "results")])
    assert result.exit_code == 0 and "segments[0]" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("where", "edit"),
    [
        ("experiment", lambda m: m.update(runs=5)),
        ("experiment", lambda m: m["config"].update(name=[1, 2])),
        ("experiment", lambda m: m["config"].update(probes=5)),
        ("experiment", lambda m: m["config"].update(dataset=5)),
        ("experiment", lambda m: m.update(data=5)),
        ("experiment", lambda m: m["config"]["probes"].update(range=[1])),
        ("run", lambda c: c.update(model=5)),
        ("run", lambda c: c.update(model={"name": "lenet5"})),
    ],
)
def test_a_recorded_config_of_the_wrong_shape_is_left_out_with_a_warning(tmp_path, where, edit):
    """Issue 37, item 15: these gave tracebacks in list, report, plot and export."""
    import yaml

    exp = write_experiment(tmp_path / "results")
    path = exp / "experiment.yaml" if where == "experiment" else exp / RUN / "config.yaml"
    record = yaml.safe_load(path.read_text())
    edit(record)
    path.write_text(yaml.safe_dump(record))
    for command in (["list"], ["report"], ["export", "--csv", str(tmp_path / "csv")]):
        result = CliRunner().invoke(app, [command[0], str(tmp_path / "results"), *command[1:]])
        assert result.exit_code in (0, 2) and "Traceback" not in result.output, result.output  # an error would be 1
        assert str(path) in result.output


def test_a_seed_above_a_billion_is_a_seed_not_damage(tmp_path):
    """The config allows seeds up to 2**32 - 1; the record checks bounded them by the step bound (1e9)."""
    exp = write_experiment(tmp_path / "results")
    summary = json.loads((exp / RUN / "summary.json").read_text())
    (exp / RUN / "summary.json").write_text(json.dumps({**summary, "seed": 3_000_000_000}))
    result = CliRunner().invoke(app, ["list", str(tmp_path / "results")])
    assert result.exit_code == 0 and "warning" not in result.output


@pytest.mark.parametrize(
    ("where", "edit"),
    [
        ("run", lambda c: c["model"].update(label=5)),
        ("run", lambda c: c.update(dataset={"name": [1]})),
        ("experiment", lambda m: m["config"]["reference"].update(test_acc_at_epoch=5)),
    ],
)
def test_recorded_sections_are_checked_by_the_configs_own_schema(tmp_path, where, edit):
    """Item 15, the review's cases: a model label of 5, a dataset name that is a list, a reference of the wrong
    shape gave tracebacks in list, report, plot or export."""
    import yaml

    exp = write_experiment(tmp_path / "results")
    path = exp / "experiment.yaml" if where == "experiment" else exp / RUN / "config.yaml"
    record = yaml.safe_load(path.read_text())
    edit(record)
    path.write_text(yaml.safe_dump(record))
    for command in (["list"], ["report"], ["plot"], ["export", "--csv", str(tmp_path / "csv")]):
        result = CliRunner().invoke(app, [command[0], str(tmp_path / "results"), *command[1:]])
        assert result.exit_code in (0, 2) and "Traceback" not in result.output, result.output
        assert str(path) in result.output


def test_a_misspelt_field_of_an_eval_or_probe_record_raises_and_an_absent_optional_one_is_none(tmp_path):
    """Issue 32, item 2: readers get the records' models and read them by attribute, so a misspelt field raises
    instead of reading as None (what `row.get("test_accuracy")` did); a field a record may lack is None."""
    from bnexp.records import DistributionProbe, EvalRecord, TrainRecord
    from bnexp.results import aligned, find_experiments, value_at

    write_experiment(tmp_path / "results")
    run = next(r for r in find_experiments(tmp_path / "results")[0].runs if r.name == RUN)
    evaluation, probe = run.evals[0], run.probes[0]
    assert isinstance(evaluation, EvalRecord) and isinstance(probe, DistributionProbe)
    assert isinstance(run.train[0], TrainRecord)
    assert 0 <= evaluation.test_acc <= 1 and evaluation.dead_units is None  # not recorded by these runs
    with pytest.raises(AttributeError, match="test_accuracy"):
        evaluation.test_accuracy  # noqa: B018
    with pytest.raises(AttributeError, match="stdev"):
        probe.stdev  # noqa: B018
    with pytest.raises(AttributeError, match="test_accuracy"):
        value_at(run, "test_accuracy", epoch=evaluation.epoch)
    with pytest.raises(AttributeError, match="losses"):
        aligned([run], "train", "losses")
