"""Property tests of the command line against real checkpoints (not a missing one): whatever flags and numbers
come, ``sample``, ``infill``, ``eval`` and ``plan`` end with a result (exit 0) or one line and exit code 2, never a
traceback, and a refused run writes nothing; ``push --local`` never changes a folder it refuses."""

import shutil
from pathlib import Path

from cli_run import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Values a hostile user types: out of range, not numbers, huge, and a few valid small ones (kept cheap: no value
# here asks for many steps, samples or tokens that would be accepted).
VALUES = ["-1", "0", "1", "2", "nan", "inf", "-inf", "1e23", "9" * 30, "9" * 5000, "", "x", "0.5", "analytic",
          "confidence", "dual", "bfloat16", "float64", "[MASK:3]", "[MASK:" + "9" * 5000 + "]", "To be\n",
          "{\"a\": 1}"]  # fmt: skip
SAMPLE_FLAGS = ["--steps", "--length", "--num-samples", "--top-p", "--temperature", "--predictor", "--seed", "--order",
                "--tokens-per-step", "--threshold", "--remask-rounds", "--remask-tokens", "--block", "--guidance",
                "--label", "--device", "--dtype", "--format", "--approximate-cache", "--cache-block"]  # fmt: skip
INFILL_FLAGS = [*SAMPLE_FLAGS, "--template", "--prefix", "--suffix"]
EVAL_FLAGS = ["--num-t", "--max-windows", "--batch-size", "--seed", "--device", "--dtype", "--split", "--dataset",
              "--chunking"]  # fmt: skip
PLAN_FLAGS = ["--gpus", "--gpu", "--mfu", "--vocab-size", "--train.batch_size", "--train.grad_accum",
              "--model.seq_len", "--train.max_steps"]  # fmt: skip
SLOW = {"--steps", "--length", "--num-samples", "--num-t", "--max-windows", "--batch-size"}


def arguments(flags):
    pairs = st.tuples(st.sampled_from(flags), st.sampled_from(VALUES))
    return st.lists(pairs, max_size=4).map(lambda ps: [w for flag, value in ps for w in (flag, value)])


def check(capsys, argv, out: Path):
    code, _, err = run_cli(capsys, [*argv, "--out", str(out)] if out is not None else argv)
    assert code in (0, 2), err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert out is None or not out.exists()


def cheap(words: list[str]) -> list[str]:
    """Leave out flags that a valid large value would make slow: those values are only ones we refuse anyway."""
    kept = []
    for flag, value in zip(words[::2], words[1::2], strict=True):
        if flag in SLOW and value.lstrip("-").isdigit() and value.lstrip("-") not in ("0", "1", "2"):
            continue
        kept += [flag, value]
    return kept


# derandomized: CI reruns the same cases (explore with --hypothesis-seed=N; each find becomes a fixed test)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@SETTINGS
@given(words=arguments(SAMPLE_FLAGS), autoregressive=st.booleans())
def test_sample_answers_any_flags_in_one_line(capsys, tmp_path, trained_run, trained_ar_run, words, autoregressive):
    run = trained_ar_run if autoregressive else trained_run
    out = tmp_path / f"out-{len(words)}.txt"
    out.unlink(missing_ok=True)
    check(capsys, ["sample", "--checkpoint", str(run), "--steps", "2", "--length", "8", *cheap(words)], out)


@SETTINGS
@given(words=arguments(INFILL_FLAGS))
def test_infill_answers_any_flags_in_one_line(capsys, tmp_path, trained_run, words):
    out = tmp_path / "infill.txt"
    out.unlink(missing_ok=True)
    check(capsys, ["infill", "--checkpoint", str(trained_run), "--steps", "2", *cheap(words)], out)


@SETTINGS
@given(words=arguments(EVAL_FLAGS))
def test_eval_answers_any_flags_in_one_line(capsys, trained_run, words):
    check(capsys, ["eval", "--checkpoint", str(trained_run), "--num-t", "1", "--max-windows", "2", *cheap(words)], None)


@SETTINGS
@given(words=arguments(PLAN_FLAGS))
def test_plan_answers_any_flags_in_one_line_and_writes_nothing_it_refuses(capsys, tmp_path, words):
    out = tmp_path / "plan.json"
    out.unlink(missing_ok=True)
    code, _, err = run_cli(capsys, ["plan", "--config", "tiny", "--vocab-size", "84", *words, "--json", str(out)])
    assert code in (0, 2), err
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert not out.exists()


USER_FILES = st.dictionaries(
    st.sampled_from(["README.md", "config.json", "model.safetensors", "thesis.tex", "notes/a.txt"]),
    st.sampled_from(["mine", "---\nlibrary_name: other\n---\n", "---\nlibrary_name: scorediff\n---\n"]),
    max_size=3,
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(files=USER_FILES)
def test_push_local_changes_only_new_empty_or_its_own_folders(capsys, tmp_path_factory, trained_run, files):
    folder = tmp_path_factory.mktemp("dest") / "model"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    ours = set(files) <= {"README.md", "config.json", "model.safetensors"} and "README.md" in files and (
        "library_name: scorediff" in files["README.md"])  # fmt: skip
    code, _, err = run_cli(capsys, ["push", "--checkpoint", str(trained_run), "--repo", "me/x", "--local", str(folder)])
    if not files or ours:
        assert code == 0, err
        assert (folder / "model.safetensors").stat().st_size > 1000
    else:
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert [p.name for p in folder.parent.iterdir()] == ["model"]  # no temporary folder left beside it


RUN_TARGETS = st.sampled_from([
    "config.json", "metrics.jsonl", "tokenizer.json", "training_curve.png", ".lock", "checkpoints/last/config.json",
    "checkpoints/last/model.safetensors", "checkpoints/last/ema.safetensors", "checkpoints/last/trainer_state.json",
    "checkpoints/last/trainer_state.safetensors", "checkpoints/last/new.txt", "new.txt", "checkpoints",
])  # fmt: skip
OUTPUTS = st.sampled_from([("sample", "--out", "x"), ("sample", "--trajectory", "x.html"), ("eval", "--json", "x")])


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(target=RUN_TARGETS, output=OUTPUTS)
def test_no_output_flag_changes_a_file_of_a_run(capsys, tmp_path_factory, trained_run, target, output):
    """Whatever file of a run an output flag names, the run's files stay as they were: refused in one line, or a
    new file written beside them (``.html`` appended to a trajectory's name)."""
    run = tmp_path_factory.mktemp("runs") / "run"
    shutil.copytree(trained_run, run)
    last = sorted((run / "checkpoints").iterdir())[-1].name
    path = run / target.replace("checkpoints/last", f"checkpoints/{last}")
    command, flag, _ = output
    if flag == "--trajectory" and path.suffix != ".html":
        path = path.with_name(path.name + ".html")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    extra = ["--steps", "2"] if command == "sample" else ["--max-windows", "2", "--num-t", "1"]
    code, _, err = run_cli(capsys, [command, "--checkpoint", str(run), *extra, flag, str(path)])
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err
    assert {p: p.read_bytes() for p in before} == before
    assert code == 2 or path not in before
