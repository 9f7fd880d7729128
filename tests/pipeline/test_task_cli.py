"""`wasp-jax init-task` drafts a task that loads and validates against its data;
`wasp-jax check-task` catches what would break a run; neither prints a data text."""

import json
import subprocess
import sys

import pytest
from test_cli import run_cli, write_lines

from wasp_jax import tasks
from wasp_jax.data import bundled_path, read_labeled_jsonl
from wasp_jax.pipeline.stages import prompts

NAMES = ["Bars", "Beauty & Spas", "Hotels & Travel", "Shopping"]
SECRET = "zq-secret-marker"


def four_class(tmp_path, *, string_labels=False, first_id=0, per_class=5, named=True):
    rows = []
    for c, name in enumerate(NAMES):
        for i in range(per_class):
            text = f"{SECRET} {i} a visit to a place of kind {c} with several plain words here"
            if string_labels:
                label = {"label": name.lower() if i == 0 else name}  # spellings may vary
            else:
                label = {"label": c + first_id, "label_name": name} if named else {"label": c}
            rows.append(json.dumps({"text": text, **label}))
    rows.reverse()  # the class order must not come from the file order
    return write_lines(tmp_path / "data.jsonl", rows)


def init(tmp_path, capsys, data, *extra, out="t.json", description="Yelp business reviews"):
    argv = ["init-task", "--data", data, "--description", description, "--out", tmp_path / out]
    return run_cli([*argv, *extra], capsys)


def errors(err):
    """The error lines of stderr; each problem is one line."""
    lines = [line for line in err.splitlines() if line.strip()]
    return [line for line in lines if ": error: " in line]


@pytest.mark.parametrize("string_labels", [False, True])
def test_init_task_then_check_task(tmp_path, capsys, string_labels):
    data = four_class(tmp_path, string_labels=string_labels)
    rc, stdout, err = init(tmp_path, capsys, data)
    assert rc == 0, err
    out = tmp_path / "t.json"
    task = tasks.load_task(str(out))
    want = NAMES if not string_labels else sorted(NAMES, key=str.casefold)
    assert list(task.labels) == want and list(task.label_words) == want and task.name == "t"
    assert (task.label_field, task.label_offset) == ("label", 0)
    rows = read_labeled_jsonl(data, label_names=task.labels)  # the data fits the task
    assert [sum(r["label"] == c for r in rows) for c in range(4)] == [5, 5, 5, 5]
    for field, template in tasks.template_fields(task).items():
        required, _ = tasks.TEMPLATE_SLOTS[field]
        assert all("{" + r + "}" in template for r in required), field
    assert "Yelp business reviews" in task.contrastive_instruction
    prompt = prompts.zero_shot_prompt(task, 2)
    assert f'"{want[2]}"' in prompt and "{" not in prompt and prompt.endswith('"')
    assert len(task.aug_pe_styles) >= 4
    # the default typical length, 50 words: min_words = 50 / 5, new tokens 50 / 3 - 2 * 50
    assert (task.min_words, task.min_new_tokens, task.max_new_tokens) == (10, 17, 100)
    assert "0 = 'Bars': 5 samples" in stdout
    rc, stdout2, err2 = run_cli(["check-task", out, "--data", data], capsys)
    assert rc == 0, err2
    assert "OK for" in stdout2 and "warning" not in err2
    for kind in ("zero-shot", "contrastive", "non-contrastive", "aug-pe"):
        assert f"    {kind}: " in stdout2
    assert f"3 = {want[3]!r} (label word {want[3]!r}): 5" in stdout2
    assert SECRET not in stdout + err + stdout2 + err2


def test_init_task_reads_labels_only(tmp_path, capsys, monkeypatch):
    """The data may be the private set: the drafted task is the same whatever its texts are,
    and its lengths come from --typical-words (public) or the default, never from the texts."""
    import statistics

    def no_statistics(*args, **kwargs):
        raise AssertionError("init-task computed a statistic of the texts")

    monkeypatch.setattr(statistics, "median", no_statistics)
    monkeypatch.setattr(statistics, "mean", no_statistics)
    short = four_class(tmp_path)
    long = write_lines(
        tmp_path / "long.jsonl",
        [
            json.dumps(json.loads(line) | {"text": f"{SECRET} " + "word " * (400 * (i + 1))})
            for i, line in enumerate(short.read_text().splitlines())
        ],
    )
    specs = []
    for data, out in ((short, "a.json"), (long, "b.json")):
        rc, stdout, err = init(tmp_path, capsys, data, out=out)
        assert rc == 0, err
        assert "typical text 50 words (the default; set --typical-words)" in stdout
        assert SECRET not in stdout + err
        specs.append(json.loads((tmp_path / out).read_text()) | {"name": "x"})
    assert specs[0] == specs[1]
    rc, stdout, err = init(tmp_path, capsys, long, "--typical-words", "300", out="c.json")
    assert rc == 0, err
    task = tasks.load_task(str(tmp_path / "c.json"))
    assert (task.min_words, task.min_new_tokens, task.max_new_tokens) == (60, 64, 400)
    rc, _, err = init(tmp_path, capsys, long, "--typical-words", "0", out="d.json")
    assert rc == 2 and "--typical-words" in err and not (tmp_path / "d.json").exists()


def test_int_ids_from_one_become_an_offset(tmp_path, capsys):
    data = four_class(tmp_path, first_id=1)
    assert init(tmp_path, capsys, data)[0] == 0
    task = tasks.load_task(str(tmp_path / "t.json"))
    assert list(task.labels) == NAMES and task.label_offset == -1
    assert run_cli(["check-task", tmp_path / "t.json", "--data", data], capsys)[0] == 0


def test_unnamed_ids_and_another_label_field(tmp_path, capsys):
    # "stars" is the class; label_name names the other field's classes and is ignored
    rows = [
        json.dumps({"text": f"{SECRET} a b c d e", "stars": s, "label": 0, "label_name": "Bars"})
        for s in (3, 1, 2, 1)
    ]
    data = write_lines(tmp_path / "d.jsonl", rows)
    rc, stdout, err = init(tmp_path, capsys, data, "--label-field", "stars")
    assert rc == 0, err
    task = tasks.load_task(str(tmp_path / "t.json"))
    assert list(task.labels) == ["stars 1", "stars 2", "stars 3"] and task.label_offset == -1
    assert "names no class for id(s) [0, 1, 2]" in err
    rc, _, err = run_cli(["check-task", tmp_path / "t.json", "--data", data], capsys)
    assert rc == 0, err
    assert SECRET not in stdout + err


def test_gaps_in_ids_suggest_the_names(tmp_path, capsys):
    rows = [
        json.dumps({"text": f"{SECRET} words here", "label": i, "label_name": n})
        for i, n in [(8, "Restaurants"), (1, "Bars"), (3, "Events"), (8, "Restaurants")]
    ]
    data = write_lines(tmp_path / "d.jsonl", rows)
    rc, _, err = init(tmp_path, capsys, data)
    assert (
        rc == 2 and "consecutive ids, found [1, 3, 8]" in err and "--label-field label_name" in err
    )
    assert not (tmp_path / "t.json").exists()
    rc, _, err = init(tmp_path, capsys, data, "--label-field", "label_name")
    assert rc == 0, err
    assert tasks.load_task(str(tmp_path / "t.json")).labels == ("Bars", "Events", "Restaurants")
    assert run_cli(["check-task", tmp_path / "t.json", "--data", data], capsys)[0] == 0


def test_init_task_refuses_to_overwrite(tmp_path, capsys):
    data = four_class(tmp_path)
    out = tmp_path / "t.json"
    out.write_text("{}")
    rc, _, err = init(tmp_path, capsys, data, description="reviews")
    assert rc == 2 and "--force" in err and out.read_text() == "{}"
    assert init(tmp_path, capsys, data, "--force")[0] == 0
    assert tasks.load_task(str(out)).num_classes == 4
    before = data.read_text()
    rc, _, err = init(tmp_path, capsys, data, "--force", out="data.jsonl")
    assert rc == 2 and "the data file itself" in err and data.read_text() == before
    (tmp_path / "folder").mkdir()
    rc, _, err = init(tmp_path, capsys, data, "--force", out="folder")
    assert rc == 2 and "is a folder" in err


def _bad(tmp_path, name, rows):
    return write_lines(tmp_path / name, [json.dumps(r) for r in rows])


def test_init_task_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    data = four_class(tmp_path)
    t = f"{SECRET} some words"
    cases = [
        (tmp_path / "missing.jsonl", (), "does not exist"),
        (_bad(tmp_path, "one.jsonl", [{"text": t, "label": 0}] * 3), (), "only one class"),
        (_bad(tmp_path, "none.jsonl", [{"text": t}] * 2), (), "no 'label' field"),
        (write_lines(tmp_path / "empty.jsonl", []), (), "holds no records"),
        (_bad(tmp_path, "mix.jsonl", [{"text": t, "label": 0}, {"text": t, "label": "b"}]), (),
         "mixes int ids and class names"),
        (_bad(tmp_path, "blank.jsonl", [{"text": " ", "label": 0}, {"text": t, "label": 1}]), (),
         '"text" is empty'),
        (_bad(tmp_path, "float.jsonl", [{"text": t, "label": 0.5}, {"text": t, "label": 1}]), (),
         "must be an int id or a class name"),
        (_bad(tmp_path, "names.jsonl", [{"text": t, "label": 0, "label_name": "a"},
                                        {"text": t, "label": 1, "label_name": "b"},
                                        {"text": t, "label": 0, "label_name": "c"}]), (),
         "label 0 is named 'c' here but 'a' on line 1"),
        (_bad(tmp_path, "many.jsonl", [{"text": t, "label": f"{SECRET} {i}"} for i in range(30)]),
         (), "30 distinct 'label' values in 30 records"),
        (data, ("--description", " \n "), "--description is empty"),
        (data, ("--label-field", "text"), "--label-field text names the texts"),
    ]  # fmt: skip
    for path, extra, needle in cases:
        argv = ["init-task", "--data", path, "--description", "x", "--out", tmp_path / "new.json"]
        rc, stdout, err = run_cli([*argv, *extra], capsys)
        assert rc == 2 and needle in err, (path, err)
        assert len(errors(err)) == 1 and not stdout, err
        assert SECRET not in err and not (tmp_path / "new.json").exists(), path


def _write_spec(tmp_path, **changes):
    spec = tasks.draft_task(name="x", description="reviews", labels=NAMES, typical_words=14)
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
        (
            {"labels": NAMES[:3], "label_words": NAMES[:3]},
            "5 record(s) of {data} have label 3, not a class of the task",
        ),
        ({"contrastive.instruction": 'A {flavour} {label_word}: "'}, "['flavour']; known:"),
        ({"non_contrastive.instruction": 'Write another one: "'}, "instruction lacks {label_word}"),
        ({"zero_shot.prompt": 'A review: "'}, "zero_shot.prompt lacks {label_word}"),
        (
            {"contrastive.instruction": '{label_word} like {sample}: "'},
            "['sample'] is never filled",
        ),
        ({"contrastive.good_prefix": "A good {label_word}: "}, "good_prefix: ['label_word'] is"),
        ({"aug_pe.prompt": "Rephrase {style} for {label_word}:\n"}, "must contain {sample}"),
        ({"label_words": ["Bars", "", "Hotels", "Shops"]}, "label_words of class(es) [1]"),
        ({"labels": ["Bars", "bars", "Hotels", "Shops"]}, "labels ['bars'] occur twice"),
    ],
)
def test_check_task_catches_problems(tmp_path, capsys, changes, needle):
    data = four_class(tmp_path, named=False)
    spec = _write_spec(tmp_path, **changes)
    rc, stdout, err = run_cli(["check-task", spec, "--data", data], capsys)
    assert rc == 2 and needle.replace("{data}", str(data)) in err, err
    assert len(errors(err)) == 1, err  # one line per problem, no repeats per class
    assert "OK for" not in stdout and SECRET not in stdout + err


def test_check_task_reports_every_outside_label_but_never_texts(tmp_path, capsys):
    spec = _write_spec(tmp_path)
    t = f"{SECRET} some words"
    rows = [{"text": t, "label": 0}, {"text": t, "label": 7}, {"text": t, "label": 7}]
    rows += [{"text": t, "label": "Parks"}, {"text": t}]
    rc, _, err = run_cli(["check-task", spec, "--data", _bad(tmp_path, "d.jsonl", rows)], capsys)
    assert rc == 2 and len(errors(err)) == 3, err
    assert "2 record(s)" in err and "label 7" in err and "label 'Parks'" in err
    assert "1 record(s)" in err and "lack the 'label' field" in err
    many = [{"text": t, "label": f"{SECRET} {i}"} for i in range(20)]
    rc, _, err = run_cli(["check-task", spec, "--data", _bad(tmp_path, "m.jsonl", many)], capsys)
    assert rc == 2 and "20 distinct 'label' values" in err and SECRET not in err


def test_check_task_warns_on_lengths_and_missing_classes(tmp_path, capsys):
    data = write_lines(
        tmp_path / "d.jsonl", [json.dumps({"text": "w " * 40, "label": c}) for c in range(3)]
    )
    spec = _write_spec(tmp_path, min_words=60, max_words=70, max_new_tokens=20)
    rc, stdout, err = run_cli(["check-task", spec, "--data", data], capsys)
    assert rc == 0 and "OK for" in stdout and "(3 warnings)" in stdout, err
    assert "min_words=60 exceeds" in err and "max_new_tokens=20 is short" in err
    assert "class 3 ('Shopping') has no samples" in err
    spec = _write_spec(tmp_path, min_words=1, max_words=30, max_new_tokens=100)
    rc, _, err = run_cli(["check-task", spec, "--data", data], capsys)
    assert rc == 0 and "max_words=30 is below" in err


def test_check_task_takes_builtin_names(tmp_path, capsys):
    rc, stdout, err = run_cli(
        ["check-task", "imdb", "--data", bundled_path("imdb", "private.jsonl")], capsys
    )
    assert rc == 0 and "imdb: OK for" in stdout, err
    assert "zero-shot with subject" in stdout  # imdb has a two-stage zero-shot prompt
    rc, _, err = run_cli(["check-task", "no_such_task", "--data", "x.jsonl"], capsys)
    assert rc == 2 and "unknown task 'no_such_task'" in err and len(err.splitlines()) == 1
    for name in tasks.builtin_tasks():
        assert tasks.check_templates(tasks.load_task(name)) == ([], []), name


def test_task_commands_import_no_heavy_modules():
    code = (
        "import sys, wasp_jax.cli.task; "
        "print(sorted(m for m in ('numpy', 'jax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "label,words",
    [
        ("card_about_to_expire", "card about to expire"),
        ("Top_Up__Failed", "top up failed"),
        ("cardExpiry", "card expiry"),
        ("Hotels & Travel", "Hotels & Travel"),
        ("e-mail", "e-mail"),
        ("U.S.", "U.S."),
        ("5 stars", "5 stars"),
    ],
)
def test_identifier_labels_become_words(label, words):
    assert tasks.label_words_of(label) == words
    assert tasks.is_identifier(label) == (label != words)


def test_init_task_words_identifier_labels_and_check_task_warns_on_them(tmp_path, capsys):
    intents = ["card_about_to_expire", "top_up_failed"]
    rows = [
        json.dumps({"text": f"{SECRET} {i} plain words about a bank card", "label": name})
        for name in intents
        for i in range(3)
    ]
    data = write_lines(tmp_path / "intents.jsonl", rows)
    rc, stdout, err = init(tmp_path, capsys, data)
    assert rc == 0, err
    task = tasks.load_task(str(tmp_path / "t.json"))
    assert list(task.labels) == intents  # the data's labels still match
    assert list(task.label_words) == ["card about to expire", "top up failed"]
    assert "(prompts say 'card about to expire')" in stdout
    rendered = prompts.zero_shot_prompt(task, 0)
    assert "card about to expire" in rendered and "card_about_to_expire" not in rendered
    rc, out, err = run_cli(["check-task", tmp_path / "t.json", "--data", data], capsys)
    assert rc == 0 and "identifiers" not in out + err
    spec = json.loads((tmp_path / "t.json").read_text())
    spec["label_words"] = intents  # the identifiers themselves: warned about, with the fix
    (tmp_path / "t.json").write_text(json.dumps(spec))
    rc, out, err = run_cli(["check-task", tmp_path / "t.json", "--data", data], capsys)
    assert rc == 0 and "look like identifiers" in out + err
    assert "'card about to expire'" in out + err and SECRET not in out + err
