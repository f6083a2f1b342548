from __future__ import annotations

import json

from typer.testing import CliRunner

from relevance.cli import app
from relevance_core.cot.grammar import Explanation, parse, render
from tests.relevance_core.cot.test_grammar import (
    ANGLE_QUERY,
    ANGLE_TEXT,
    ANGLE_TITLE,
    FIG3_QUERY,
    FIG3_TEXT,
    FIG3_TITLE,
)

runner = CliRunner()


def test_cot_parse_fig3() -> None:
    result = runner.invoke(app, ["cot", "parse", "--query", FIG3_QUERY, "--title", FIG3_TITLE], input=FIG3_TEXT)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == parse(FIG3_TEXT, FIG3_QUERY, FIG3_TITLE).to_dict()
    assert printed["ok"] is True
    assert printed["explanation"]["judgement"] == "Bad"
    assert printed["explanation"]["reason"] == "material Mismatch"
    assert printed["explanation"]["item_values"][1] == {
        "aspect": "material",
        "value": "cotton",
        "matches": False,
        "span": [0, 6],
    }


def test_cot_parse_malformed_exits_1_with_errors() -> None:
    result = runner.invoke(app, ["cot", "parse", "--query", "q", "--title", "t"], input="Final judgment: Maybe")
    assert result.exit_code == 1
    printed = json.loads(result.stdout)
    assert printed["ok"] is False
    assert printed["errors"] == ["judgement word 'Maybe' is not Good or Bad"]


def test_cot_render_round_trip() -> None:
    explanation = parse(ANGLE_TEXT, ANGLE_QUERY, ANGLE_TITLE).explanation
    assert explanation is not None
    result = runner.invoke(app, ["cot", "render"], input=explanation.model_dump_json())
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == ANGLE_TEXT == render(Explanation.model_validate_json(explanation.model_dump_json()))


def test_cot_render_rejects_invalid_json() -> None:
    result = runner.invoke(app, ["cot", "render"], input='{"judgement": "Maybe"}')
    assert result.exit_code == 1
    assert "not an Explanation" in result.output
