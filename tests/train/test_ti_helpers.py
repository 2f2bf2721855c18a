"""Textual-inversion helpers: A1111's templates and their filling, schedule strings, the config's checks."""

import random

import pytest
import torch

from artdiff.errors import UserError
from artdiff.train.lr_schedule_string import parse_lr_schedule
from artdiff.train.textual_inversion import TextualInversionConfig, file_stem, initial_vectors
from artdiff.train.ti_templates import (
    TEMPLATES,
    fill_template,
    read_template_file,
    resolve_template,
    style,
    style_filewords,
    subject,
    subject_filewords,
)
from sd_fixtures import tiny_tokenizer

# --- templates --------------------------------------------------------------------------------------------


def test_builtin_templates_are_a1111s_files():
    assert len(style_filewords) == 19 and len(style) == 19 and len(subject) == len(subject_filewords) == 27
    assert style_filewords[0] == "a painting of [filewords], art by [name]"
    assert style_filewords[-1] == "a large painting of [filewords], art by [name]"
    assert style_filewords.count("a cropped painting of [filewords], art by [name]") == 2  # A1111's duplicates
    assert style[7] == "a picture, art by [name]" and subject[-1] == "a photo of a small [name]"
    assert subject_filewords[0] == "a photo of a [name], [filewords]"
    assert subject_filewords[-1] == "a photo of a small [name], [filewords]"
    assert TEMPLATES["none"] == ("picture",)


def test_fill_template_follows_a1111s_create_text():
    line = ["a painting of [filewords], art by [name]"]
    rng = random.Random(0)
    assert fill_template(line, "<wildsmith>", "a lighthouse by the sea", rng) == \
        "a painting of a lighthouse by the sea, art by <wildsmith>"
    assert fill_template(["a photo of a [name], [filewords]"], "cat-toy", "red,small", rng) == \
        "a photo of a cat-toy, red,small"
    # [filewords] is replaced first, so a caption saying [name] gets the token too, as in A1111.
    assert fill_template(["[filewords]"], "<t>", "art by [name]", rng) == "art by <t>"
    picks = {fill_template(style_filewords, "<t>", "x", random.Random(seed)) for seed in range(200)}
    assert picks == {line.replace("[filewords]", "x").replace("[name]", "<t>") for line in style_filewords}


def test_tag_shuffle_and_dropout_are_seeded():
    tags = "oil,sea,ship,storm,night"
    shuffled = fill_template(["[filewords]"], "t", tags, random.Random(3), shuffle_tags=True)
    assert sorted(shuffled.split(",")) == sorted(tags.split(",")) and shuffled != tags
    assert shuffled == fill_template(["[filewords]"], "t", tags, random.Random(3), shuffle_tags=True)
    assert fill_template(["[filewords]"], "t", tags, random.Random(3), tag_dropout=0.999) == ""


def test_template_files_and_names(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("  a sketch of [filewords] by [name]  \n\n[name] style\n")
    assert read_template_file(path) == ("a sketch of [filewords] by [name]", "[name] style")
    assert resolve_template(str(path)) == read_template_file(path)
    assert resolve_template("style_filewords.txt") == style_filewords == resolve_template("style-filewords")
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(UserError, match="no templates"):
        read_template_file(tmp_path / "empty.txt")
    with pytest.raises(UserError, match="neither one of style-filewords"):
        resolve_template("nope")


# --- learning-rate schedule strings ------------------------------------------------------------------------


def a1111_rates(text, max_steps):
    """A1111's LearnScheduleIterator + LearnRateScheduler.apply, stepped as train_embedding does: rate per step."""
    entries = []
    for pair in text.split(","):
        parts = pair.split(":")
        if len(parts) == 2:
            step = int(parts[1])
            if step > 0:
                entries.append((float(parts[0]), min(step, max_steps)))
                if step > max_steps:
                    break
            elif step == -1:
                entries.append((float(parts[0]), max_steps))
                break
        else:
            entries.append((float(parts[0]), max_steps))
            break
    position, rates = 0, []
    for step in range(max_steps):
        if step >= entries[position][1]:  # apply(): advance one entry, or finish
            if position + 1 == len(entries):
                break
            position += 1
        rates.append(entries[position][0])
    return rates


@pytest.mark.parametrize("text", ["0.005", "0.005:100, 1e-3:1000, 1e-5", "0.1:5, 0.01:8", "0.1:5,0.01:-1",
                                  "1e-2:3, 5e-3:7, 1e-3:2000, 1e-4", " 0.02 : 4 , 0.001 ",
                                  "0.005:100, 1e-3:1000, 1e-5,", "0.02:4, 0.001 , "])
@pytest.mark.parametrize("max_steps", [6, 12, 1500])
def test_schedule_matches_a1111_step_for_step(text, max_steps):
    schedule = parse_lr_schedule(text)
    steps = max_steps if schedule.end_step is None else min(max_steps, schedule.end_step)
    assert [schedule.rate_at(s) for s in range(steps)] == a1111_rates(text, max_steps)


def test_a_trailing_comma_is_accepted_as_in_a1111():
    assert parse_lr_schedule("0.005:100, 1e-3:1000, 1e-5,") == parse_lr_schedule("0.005:100, 1e-3:1000, 1e-5")
    # A1111 stops reading at the step past --max-steps, so "0.1:5, 0.01:8," trains there; it is the same here.
    assert parse_lr_schedule("0.1:5, 0.01:8,") == parse_lr_schedule("0.1:5, 0.01:8")
    assert parse_lr_schedule(" 0.005 ,\t").pieces == ((0.005, None),)


def test_schedule_examples():
    schedule = parse_lr_schedule("0.005:100, 1e-3:1000, 1e-5")
    assert [schedule.rate_at(s) for s in (0, 99, 100, 999, 1000, 10**6)] == [0.005, 0.005, 1e-3, 1e-3, 1e-5, 1e-5]
    assert schedule.end_step is None and schedule.peak == 0.005 and str(schedule) == "0.005:100, 0.001:1000, 1e-05"
    assert parse_lr_schedule("0.01").rate_at(10**9) == 0.01
    assert parse_lr_schedule("0.01:10, 0.001:50").end_step == 50  # A1111 stops training at step 50


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("abc", "'abc' is not a number"), ("0.1:x", "not a whole step"), ("0.1:2.5", "not a whole step"),
    ("0.1:10:5", "RATE or RATE:STEP"), ("0.1:10, 0.2:5", "steps must increase"), ("0.1, 0.2:100", "never be used"),
    ("0.1:0", "at least 1"), ("-0.1", "finite number >= 0"), ("nan", "finite"), ("0.1:10,,0.01", "empty entry"),
    ("0.1,,", "empty entry"), (",", "empty entry"),
    ("0:10, 0", "every rate is 0")])
def test_malformed_schedules_are_one_line_errors(text, message):
    with pytest.raises(ValueError, match=message) as error:
        parse_lr_schedule(text)
    assert "\n" not in str(error.value)


# --- config ----------------------------------------------------------------------------------------------


def ti_config(tmp_path, **options):
    return TextualInversionConfig(**{"model": "sd", "data": tmp_path, "out": tmp_path / "run", "token": "<t>",
                                     **options})


def test_config_takes_a1111_defaults_and_the_schedule(tmp_path):
    cfg = ti_config(tmp_path, lr_schedule="0.01:4, 0.002", warmup_steps=0)
    assert (cfg.batch_size, cfg.weight_decay, cfg.grad_clip, cfg.ema_decay, cfg.lr) == (1, 0.0, 0.0, 0.0, 0.01)
    assert [cfg.lr * cfg.lr_factor(s) for s in range(6)] == pytest.approx([0.01] * 4 + [0.002] * 2)
    assert ti_config(tmp_path, lr_schedule="0.01:40", max_steps=100).max_steps == 40  # the schedule ends training


@pytest.mark.parametrize("options, message", [
    ({"vectors": 17}, "--vectors must be between 1 and 16, got 17"), ({"vectors": 0}, "between 1 and 16"),
    ({"token": ""}, "--token is required"), ({"token": "two words"}, "one word, no spaces"), ({"model": ""}, "--model"),
    ({"override_token": "monet", "init_text": "x"}, "--init-text does not apply"),
    ({"template": "none"}, "never says \\[name\\]"), ({"lr_schedule": "0.1:x"}, "not a whole step")])
def test_bad_options_are_one_line_errors(tmp_path, options, message):
    with pytest.raises(ValueError, match=message) as error:
        ti_config(tmp_path, **options)
    assert "\n" not in str(error.value)


def test_file_stem_keeps_a1111s_characters():
    assert file_stem("<wildsmith>") == "wildsmith" and file_stem("my style_v2.1") == "my style_v2.1"


# --- A1111's create_embedding ------------------------------------------------------------------------------


def test_init_text_is_spread_over_the_vectors_as_a1111_does(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path / "tok")
    weight = torch.randn(len(tokenizer), 8, generator=torch.Generator().manual_seed(0))
    ids = tokenizer("sea cat", add_special_tokens=False)["input_ids"]
    k = len(ids)
    spread = initial_vectors(tokenizer, weight, "sea cat", n=2 * k)  # fewer tokens than vectors: each repeated
    assert torch.equal(spread, weight[[i for i in ids for _ in range(2)]])
    truncated = initial_vectors(tokenizer, weight, "sea cat", n=1)  # more tokens than vectors: the first ones
    assert torch.equal(truncated, weight[ids[:1]])
    assert torch.equal(initial_vectors(tokenizer, weight, "", n=3), torch.zeros(3, 8))
    with pytest.raises(UserError, match="has no tokens"):
        initial_vectors(tokenizer, weight, "   ", n=2)
