"""`RunParams` is the one declaration of a run's parameters: the parent flow and the CLI's
`run` command must offer each of its fields, with its default and type."""

from __future__ import annotations

import inspect
import typing

import typer
from typer.testing import CliRunner

from dmflow.params import RunParams
from flows.cli import app
from flows.recovery import recover_failed_runs
from flows.training_run import training_run

FIELDS = RunParams.model_fields
NOT_RUN_PARAMS = {"dataset", "user_id"}
"""Flow arguments that say which run, not how it runs."""


def test_the_flow_takes_every_run_param_with_its_default_and_type() -> None:
    signature = inspect.signature(training_run.fn)
    hints = typing.get_type_hints(training_run.fn)
    offered = {name for name in signature.parameters if name not in NOT_RUN_PARAMS}
    assert offered == set(FIELDS)
    for name, field in FIELDS.items():
        # The flow's default means the field's default (a blank for an optional value).
        given = RunParams.model_validate({name: signature.parameters[name].default})
        assert getattr(given, name) == field.default, name
        assert hints[name] == field.annotation, name


def test_the_flow_parameter_schema_shows_every_run_param() -> None:
    schema = training_run.parameters.model_dump()
    assert set(FIELDS) | NOT_RUN_PARAMS == set(schema["properties"])
    assert schema["required"] == ["dataset"]


def test_the_deployment_form_has_each_fields_description_type_and_bounds() -> None:
    """What the Prefect UI's form shows comes from RunParams: no field without help, no
    optional field the form can only show as "Property is type 'None'"."""
    form = training_run.parameters.model_dump()["properties"]
    declared = RunParams.model_json_schema()["properties"]
    for name, field in form.items():
        assert field.get("description"), f"{name} has no description in the form"
        assert "anyOf" not in field and field.get("type"), f"{name} has no single type"
        if name in declared:
            assert field["description"] == " ".join(declared[name]["description"].split())
            for bound in ("minimum", "maximum", "exclusiveMinimum"):
                assert field.get(bound) == declared[name].get(bound), (name, bound)
    assert (form["questions_per_chunk"]["minimum"], form["questions_per_chunk"]["maximum"]) == (
        1,
        10,
    )
    # A blank optional value is what the form sends when left empty: the default applies.
    blank = {name: "" for name in ("model", "embedder")} | {"poll_intervals_s": []}
    assert RunParams.model_validate(blank) == RunParams()
    sweep = recover_failed_runs.parameters.model_dump()["properties"]["limit"]
    assert sweep["description"] and sweep["minimum"] == 1


def test_the_run_command_offers_every_run_param_with_its_default() -> None:
    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    options = {p.name: p for p in command.params if p.name not in {"dataset", "verbose"}}
    assert set(options) == set(FIELDS)
    for name, field in FIELDS.items():
        assert options[name].default == field.default, name


def test_a_bad_value_is_a_usage_error_naming_the_option() -> None:
    runner = CliRunner()
    for argv, option in [
        (["--generator", "gpt"], "--generator"),
        (["--questions-per-chunk", "11"], "--questions-per-chunk"),
        (["--max-pairs", "0"], "--max-pairs"),
        (["--trainer", "cloud"], "--trainer"),
    ]:
        result = runner.invoke(app, ["run", "some/dataset", *argv])
        assert result.exit_code == 2, (argv, result.output)
        assert option in result.output
