"""The pure parts of `syncd verify`: differences from digests, the report, and the SQL pieces
a plan is made of (no database)."""

from __future__ import annotations

import io
import json
from decimal import Decimal

from syncd.verify import plan
from syncd.verify.compare import SAMPLE_KEYS, Differences, Verdict, diff_rows, key_object
from syncd.verify.run import _Progress


def test_diff_rows_tells_missing_extra_and_different_apart() -> None:
    source = {"[1]": "a", "[2]": "b", "[3]": "c"}
    target = {"[2]": "b", "[3]": "changed", "[4]": "d"}
    found = diff_rows(source, target)
    assert (found.missing, found.extra, found.different) == ({"[1]"}, {"[4]"}, {"[3]"})
    assert found.compared == 3


def test_on_delete_ignore_keeps_extra_rows_out_of_the_differences() -> None:
    found = diff_rows({"[1]": "a"}, {"[1]": "a", "[9]": "kept after a delete"}, counts_extra=False)
    assert found.keys() == set()


def test_equal_and_empty_sides_have_no_differences() -> None:
    assert diff_rows({}, {}).keys() == set()
    assert diff_rows({"[1]": "x"}, {"[1]": "x"}).counts() == {
        "missing": 0,
        "extra": 0,
        "different": 0,
    }


def test_keys_compared_again_replace_what_was_known_of_them() -> None:
    found = Differences(10, {"[1]", "[2]"}, {"[3]"}, {"[4]"})
    # [1] turned out to be in flight, [3] is now different rather than extra; [4] untouched.
    found.replace({"[1]", "[2]", "[3]"}, Differences(0, {"[2]"}, set(), {"[3]"}))
    assert (found.missing, found.extra, found.different) == ({"[2]"}, set(), {"[3]", "[4]"})
    assert found.compared == 10


def test_key_objects_name_the_source_key_columns_and_keep_exact_values() -> None:
    assert key_object('[1, "straße"]', ("a", "b")) == {"a": 1, "b": "straße"}
    assert key_object("[1.10]", ("price",)) == {"price": Decimal("1.10")}


def test_the_json_report_has_the_contract_shape_and_samples_are_bounded() -> None:
    remaining = Differences(500, {f"[{i}]" for i in range(30)}, {"[900]"}, set())
    record = Verdict("customers", ("id",), remaining).as_json()
    assert list(record)[:6] == ["mapping", "compared", "missing", "extra", "different", "samples"]
    assert (record["compared"], record["missing"], record["extra"], record["different"]) == (
        500,
        30,
        1,
        0,
    )
    assert len(record["samples"]["missing"]) == SAMPLE_KEYS
    assert record["samples"]["extra"] == [{"id": 900}]
    assert record["samples"]["different"] == []
    assert "repaired" not in record


def test_a_repair_report_counts_what_was_found_and_what_remains() -> None:
    verdict = Verdict("customers", ("id",), Differences(5), Differences(5, {"[1]"}, set(), {"[2]"}))
    verdict.repaired = 2
    record = verdict.as_json()
    assert (record["missing"], record["different"]) == (0, 0)
    assert record["repaired"] == {"missing": 1, "extra": 0, "different": 1, "events": 2}
    assert verdict.equal
    lines = verdict.lines()
    assert lines == [
        "customers: 5 rows compared: 1 missing, 0 extra, 1 different; repaired with 2 "
        "corrective events, equal now"
    ]


def test_the_text_report_lists_sample_keys_and_how_many_more() -> None:
    remaining = Differences(100, set(), set(), {f"[{i}]" for i in range(12)})
    lines = Verdict("pairs", ("id",), remaining).lines()
    assert lines[0] == "pairs: 100 rows compared: 0 missing, 0 extra, 12 different"
    assert lines[1].startswith('  different: {"id":0}, {"id":1}, ')
    assert lines[1].endswith("(and 2 more)")
    assert Verdict("pairs", ("id",), Differences(7)).lines() == ["pairs: 7 rows compared: equal"]


def test_rows_arrays_nest_past_the_function_argument_limit() -> None:
    flat = plan._array(["a", "b"])
    assert flat == "json_build_array(a, b)::text"
    wide = plan._array([f"c{i}" for i in range(200)])
    assert wide.count("json_build_array(") == 1 + 3  # 200 columns in arrays of 90
    assert "c199" in wide


def test_constants_become_literals_with_quotes_doubled() -> None:
    assert plan._literal(None) == "NULL"
    assert plan._literal("it's") == "'it''s'"
    assert plan._literal(Decimal("2.50")) == "'2.50'"
    assert plan._literal(True) == "'true'"
    assert plan._literal("back\\slash") == "'back\\slash'"


def test_numerics_are_compared_without_their_scale_and_text_keys_in_c_order() -> None:
    assert plan._canonical("x", "numeric(10,2)") == "trim_scale(x)"
    assert plan._canonical("x", "text") == "x"
    assert plan._ordered("k", plan.Column("k", "text", True)) == 'k COLLATE "C"'
    assert plan._ordered("k", plan.Column("k", "integer", False)) == "k"


def test_bounds_read_each_key_column_from_one_json_parameter() -> None:
    assert plan.bounds(["integer", "text"], "lo") == (
        "CAST(CAST(:lo AS json) ->> 0 AS integer), CAST(CAST(:lo AS json) ->> 1 AS text)"
    )
    assert "json_array_elements(CAST(:keys AS json))" in plan.keys_list(["integer"])


def test_progress_is_shown_only_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet = io.StringIO()
    _Progress("m", 1000, quiet).advance(10)
    assert quiet.getvalue() == ""
    terminal = Terminal()
    progress = _Progress("customers", 1000, terminal)
    progress._shown = -1e9  # as if the last line were long ago
    progress._started -= 1.0  # one second in
    progress.advance(100)
    shown = terminal.getvalue()
    assert "customers: 100 rows" in shown and "rows/s" in shown and "s left" in shown
    json.dumps(shown)  # plain text
