from __future__ import annotations

import pytest

from bnexp.yamlio import YamlProblem, parse, parse_value


def test_parse_keeps_lines_and_reads_exponent_floats():
    data, node = parse("a: 1e-4\nb: [1, 2]\n")
    assert data == {"a": 1e-4, "b": [1, 2]} and node.start_mark.line == 0
    assert parse_value("3e2") == 300.0 and parse_value("[1, 2e-3]") == [1, 0.002]


def test_duplicate_keys_name_the_line():
    with pytest.raises(YamlProblem) as e:
        parse("a: 1\nb:\n  c: 1\n  c: 2\n")
    assert "duplicate key 'c'" in str(e.value) and e.value.line == 4


def test_an_impossible_date_is_a_yaml_problem_not_a_traceback():
    with pytest.raises(YamlProblem, match=r"month must be in 1\.\.12"):
        parse("registered: 2026-13-01\n")


def test_alias_bomb_recursion_and_depth_are_refused():
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"b{i}: &b{i} [{', '.join([f'*{prev}'] * 10)}]\n" for i, prev in enumerate(["a", "b0", "b1", "b2", "b3"])
    )
    with pytest.raises(YamlProblem, match="expands to more than"):
        parse(bomb)
    with pytest.raises(YamlProblem, match="alias"):
        parse("a: &a [*a]\n")
    with pytest.raises(YamlProblem, match="nesting"):
        parse("a: " + "[" * 100 + "]" * 100 + "\n")
