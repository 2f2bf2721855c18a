"""Guidance schedules: numbers, ramps and Disco's list form, parsed without eval and indexed as Disco does."""

import pytest

from artdiff.generate.guidance_schedules import MAX_ENTRIES, Schedule, parse_schedule, validate


def test_numbers_are_constants():
    for given, value in [("5000", 5000.0), (5000, 5000.0), (0.2, 0.2), (" 1.5e3 ", 1500.0), ("-2", -2.0)]:
        schedule = parse_schedule(given, name="clip_guidance_scale")
        assert schedule.kind == "constant"
        assert schedule.at(0, steps=10) == value
        assert schedule.at(9, steps=10, timestep=3) == value


def test_a_ramp_is_linear_from_the_first_to_the_last_step():
    schedule = parse_schedule("12:4", name="tv_scale")
    assert schedule.kind == "ramp" and schedule.values == (12.0, 4.0)
    # steps 5: 12, 10, 8, 6, 4.
    assert [schedule.at(i, steps=5) for i in range(5)] == [12.0, 10.0, 8.0, 6.0, 4.0]
    assert schedule.at(0, steps=1) == 12.0  # one step: the start
    assert parse_schedule(" 0 : 1 ", name="x").at(1, steps=3) == 0.5


def test_an_integer_ramp_rounds_to_counts():
    schedule = parse_schedule("12:4", name="cut_overview", integer=True)
    # steps 4: 12, 9.33, 6.67, 4 -> 12, 9, 7, 4.
    values = [schedule.at(i, steps=4) for i in range(4)]
    assert values == [12, 9, 7, 4] and all(isinstance(v, int) for v in values)


def test_discos_default_has_its_400_600_split_at_timestep_600():
    schedule = parse_schedule("[12]*400+[4]*600", name="cut_overview", integer=True)
    assert schedule.kind == "list" and len(schedule.values) == 1000
    assert schedule.values[:400] == (12.0,) * 400 and schedule.values[400:] == (4.0,) * 600
    # Entry index = 999 - t: t = 999..600 read entries 0..399 (12), t = 599..0 read entries 400..999 (4).
    read = {t: schedule.at(0, steps=50, timestep=t) for t in (999, 600, 599, 0)}
    assert read == {999: 12, 600: 12, 599: 4, 0: 4}
    validate(schedule, name="cut_overview", steps=50)


def test_list_terms_repeat_like_python_lists_and_allow_whitespace():
    assert parse_schedule("[1, 2]*2 + [3]", name="x").values == (1.0, 2.0, 1.0, 2.0, 3.0)
    assert parse_schedule(" [ 0.2 ] * 3 ", name="x").values == (0.2, 0.2, 0.2)
    assert parse_schedule("[5]", name="x").values == (5.0,)


def test_a_list_with_one_entry_per_step_is_read_by_step():
    schedule = parse_schedule("[3]*2+[1]*3", name="cut_innercut", integer=True)
    assert [schedule.at(i, steps=5, timestep=999 - 200 * i) for i in range(5)] == [3, 3, 1, 1, 1]
    validate(schedule, name="cut_innercut", steps=5)


def test_a_list_of_the_wrong_length_names_both_lengths():
    schedule = parse_schedule("[12]*900", name="cut_overview")
    message = "cut_overview has 900 entries; give 1000 (one per timestep, Disco's form) or 50 (one per step)"
    with pytest.raises(ValueError) as caught:
        validate(schedule, name="cut_overview", steps=50)
    assert str(caught.value) == message
    with pytest.raises(ValueError, match="has 900 entries"):
        schedule.at(0, steps=50, timestep=999)
    with pytest.raises(ValueError, match="pass the step's timestep"):
        parse_schedule("[1]*1000", name="cut_overview").at(0, steps=50)


@pytest.mark.parametrize(
    "text",
    ["[12]*40o", "", "   ", "[12", "[12]*", "[12]*4.5", "[12]*-4", "[]", "[1,]", "[1]+", "[1][2]", "1:2:3", "1.2.3", "3+4",
     "5 6", "abc", "inf", "nan", "10**9", "[1]*10**9", "__import__('os')", "[__import__('os').system('true')]"],
)  # fmt: skip
def test_strings_that_do_not_parse_are_refused_in_one_line(text):
    with pytest.raises(ValueError) as caught:
        parse_schedule(text, name="cut_overview")
    message = str(caught.value)
    assert message.startswith(f"--cut-overview {text!r}: expected") and "\n" not in message


def test_the_example_typo_message():
    with pytest.raises(
        ValueError, match=r"^--cut-overview '\[12\]\*40o': expected a number .*cannot read 'o'"
    ):
        parse_schedule("[12]*40o", name="cut_overview")


def test_huge_lists_are_refused_before_they_are_built():
    with pytest.raises(ValueError, match="over 100,000 entries"):
        parse_schedule("[1]*1000000000", name="cut_overview")
    with pytest.raises(ValueError, match="over 100,000 entries"):
        parse_schedule("[1]*" + "9" * 5000, name="cut_overview")  # too long even for int()
    with pytest.raises(ValueError, match="over 100,000 entries"):
        parse_schedule("[1, 2]*50000+[1]", name="cut_overview")
    assert len(parse_schedule(f"[1]*{MAX_ENTRIES}", name="x").values) == MAX_ENTRIES


def test_values_are_checked_for_finiteness_minimum_and_whole_numbers():
    with pytest.raises(ValueError, match="finite"):
        parse_schedule(float("inf"), name="clip_guidance_scale")
    with pytest.raises(ValueError, match="finite"):
        parse_schedule("[1e999]*2", name="tv_scale")
    with pytest.raises(ValueError, match=r"^--tv-scale '-1:5': values must be at least 0 \(got -1\)"):
        parse_schedule("-1:5", name="tv_scale", minimum=0)
    with pytest.raises(ValueError, match="give whole numbers"):
        parse_schedule("[12]*400+[4.5]*600", name="cut_overview", integer=True)
    with pytest.raises(ValueError, match="give whole numbers"):
        parse_schedule(2.5, name="cutn", integer=True)
    assert parse_schedule("12.0", name="cutn", integer=True).at(0, steps=1) == 12
    for bad in (True, None, [12]):
        with pytest.raises(ValueError, match="expected"):
            parse_schedule(bad, name="cutn")


def test_steps_and_timesteps_out_of_range_are_refused():
    with pytest.raises(ValueError, match="outside a run of 5 steps"):
        parse_schedule("1", name="x").at(5, steps=5)
    with pytest.raises(ValueError, match="outside 0..999"):
        parse_schedule("[1]*1000", name="x").at(0, steps=5, timestep=1000)


def test_schedules_compare_by_value_and_keep_what_was_written():
    a = parse_schedule("[12]*2", name="cut_overview")
    assert a == Schedule(kind="list", values=(12.0, 12.0)) and a.text == "[12]*2"
    with pytest.raises(ValueError, match="needs 2..2 values"):
        Schedule(kind="ramp", values=(1.0,))


def test_the_parser_calls_no_eval_exec_or_compile():
    import ast
    import inspect

    from artdiff.generate import guidance_schedules

    calls = {
        node.func.id
        for node in ast.walk(ast.parse(inspect.getsource(guidance_schedules)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert calls and not calls & {"eval", "exec", "compile", "__import__"}
