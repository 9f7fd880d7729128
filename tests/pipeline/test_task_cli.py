"""`wasp-jax init-task` drafts a task that loads and validates against its data;
`wasp-jax check-task` catches what would break a run; neither prints a data text."""

import json

import pytest
from test_cli import run_cli, write_lines

from wasp_jax import tasks
from wasp_jax.pipeline import prompts

NAMES = ["Bars", "Beauty & Spas", "Hotels & Travel", "Shopping"]
SECRET = "zq-secret-marker"


def four_class(tmp_path, *, string_labels=False):
    rows = []
    for c, name in enumerate(NAMES):
        for i in range(5):
            text = f"{SECRET} {i} a visit to a place of kind {c} with several plain words here"
            label = {"label": name} if string_labels else {"label": c, "label_name": name}
            rows.append(json.dumps({"text": text, **label}))
    return write_lines(tmp_path / "data.jsonl", rows)


@pytest.mark.parametrize("string_labels", [False, True])
def test_init_task_then_check_task(tmp_path, capsys, string_labels):
    data = four_class(tmp_path, string_labels=string_labels)
    out = tmp_path / "t.json"
    argv = ["init-task", "--data", data, "--description", "Yelp business reviews", "--out", out]
    rc, stdout, err = run_cli(argv, capsys)
    assert rc == 0, err
    task = tasks.load_task(str(out))
    want = NAMES if not string_labels else sorted(NAMES, key=str.lower)
    assert list(task.labels) == want and task.name == "t"
    for template in tasks.template_fields(task).values():
        assert "Yelp business reviews" in template or "example" in template.lower()
    assert "{label_word}" in task.contrastive_instruction
    prompt = prompts.zero_shot_prompt(task, 2)
    assert f'"{want[2]}"' in prompt and "{" not in prompt
    assert task.min_words == 3 and 32 <= task.max_new_tokens <= 400  # median 14 words
    rc, stdout2, err2 = run_cli(["check-task", out, "--data", data], capsys)
    assert rc == 0, err2
    assert "OK for" in stdout2 and "5" in stdout2
    assert SECRET not in stdout + err + stdout2 + err2


def test_init_task_refuses_to_overwrite_and_bad_input(tmp_path, capsys):
    data = four_class(tmp_path)
    out = tmp_path / "t.json"
    out.write_text("{}")
    argv = ["init-task", "--data", data, "--description", "reviews", "--out", out]
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and "--force" in err and out.read_text() == "{}"
    assert run_cli([*argv, "--force"], capsys)[0] == 0
    one = write_lines(tmp_path / "one.jsonl", ['{"text": "a b c", "label": 0}'] * 3)
    gap = write_lines(
        tmp_path / "gap.jsonl", ['{"text": "a", "label": 0}', '{"text": "b", "label": 3}']
    )
    cases = [
        (tmp_path / "missing.jsonl", "does not exist"),
        (one, "only one class"),
        (gap, "must be 0 .. C-1"),
    ]
    for path, needle in cases:
        new = tmp_path / "new.json"
        rc, _, err = run_cli(
            ["init-task", "--data", path, "--description", "x", "--out", new], capsys
        )
        assert rc == 2 and needle in err and not new.exists(), (path, err)
    rc, _, err = run_cli(
        ["init-task", "--data", data, "--description", " ", "--out", tmp_path / "n.json"], capsys
    )
    assert rc == 2 and "--description is empty" in err


def _write_spec(tmp_path, **changes):
    spec = tasks.draft_task(name="x", description="reviews", labels=NAMES, median_words=14)
    for key, value in changes.items():
        section, _, field = key.partition(".")
        if field:
            spec[section][field] = value
        else:
            spec[section] = value
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"labels": NAMES[:3], "label_words": NAMES[:3]}, "outside the task"),
        (
            {"contrastive.instruction": 'Write a {flavour} one: "'},
            "unknown placeholder(s) ['flavour']",
        ),
        ({"non_contrastive.instruction": 'Write another one: "'}, "lacks {label_word}"),
    ],
)
def test_check_task_catches_problems(tmp_path, capsys, changes, needle):
    data = four_class(tmp_path)
    rc, _, err = run_cli(["check-task", _write_spec(tmp_path, **changes), "--data", data], capsys)
    assert rc == 2 and needle in err, err
    assert SECRET not in err


def test_check_task_warns_on_lengths_and_missing_classes(tmp_path, capsys):
    data = write_lines(
        tmp_path / "d.jsonl", [json.dumps({"text": "w " * 40, "label": c}) for c in range(3)]
    )
    spec = _write_spec(tmp_path, min_words=60, max_new_tokens=20)
    rc, _, err = run_cli(["check-task", spec, "--data", data], capsys)
    assert rc == 0
    assert "min_words=60 exceeds" in err and "max_new_tokens=20 is short" in err
    assert "class 3 ('Shopping') has no samples" in err
