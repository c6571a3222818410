"""Every user mistake: one line on stderr saying what was expected and what came, exit code 2, no traceback,
nothing half-written."""

import shutil

import pytest
from cli_run import assert_user_error


@pytest.fixture
def out_dir(tmp_path):
    path = tmp_path / "runs"
    path.mkdir()
    return path


def train_args(micro_yaml, out_dir, *extra):
    return ["train", "--config", str(micro_yaml), "--out", str(out_dir), "--quiet", *extra]


def assert_nothing_written(out_dir):
    assert list(out_dir.iterdir()) == []


def test_missing_empty_and_textless_data(capsys, micro_yaml, out_dir, tmp_path):
    assert_user_error(
        capsys,
        train_args(micro_yaml, out_dir, "--data", str(tmp_path / "nope.txt")),
        r"nope.txt' is neither a file, a folder, a glob nor an embedded corpus",
    )
    (tmp_path / "empty.txt").write_text("")
    assert_user_error(
        capsys, train_args(micro_yaml, out_dir, "--data", str(tmp_path / "empty.txt")), r"empty.txt' holds no text"
    )
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "a.png").write_bytes(b"\x89PNG")
    assert_user_error(
        capsys,
        train_args(micro_yaml, out_dir, "--data", str(tmp_path / "pictures")),
        r"pictures holds no text files \(expected .*\.txt",
    )
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    assert_user_error(
        capsys,
        train_args(micro_yaml, out_dir, "--data", str(tmp_path / "latin1.txt")),
        r"latin1.txt is not UTF-8 text: byte 0xe9",
    )
    assert_nothing_written(out_dir)


def test_unknown_preset_option_and_flag(capsys, micro_yaml, out_dir, tmp_path):
    assert_user_error(capsys, ["train", "--config", "huge"], r"unknown preset 'huge'; expected one of \[")
    folder = r"config .* is a folder; expected a preset \[.*\] or a .yaml file"  # it said the folder did not exist
    assert_user_error(capsys, ["train", "--config", str(tmp_path)], folder)
    assert_user_error(
        capsys,
        train_args(micro_yaml, out_dir, "--model.width=3"),
        r"unknown option model.width; valid: arch, block_size, cond_dim, dropout, head_dim, hidden_size",
    )
    assert_user_error(
        capsys,
        train_args(micro_yaml, out_dir, "--train.batch_size=many"),
        r"train.batch_size expects an integer; got 'many'",
    )
    assert_user_error(capsys, train_args(micro_yaml, out_dir, "--colour"), r"unrecognized arguments: --colour")
    assert_user_error(capsys, train_args(micro_yaml, out_dir, "--max-minutes", "-1"), r"--max-minutes must be > 0")
    assert_nothing_written(out_dir)


def test_prompts_lengths_and_templates(capsys, trained_run, tmp_path):
    checkpoint = ["--checkpoint", str(trained_run), "--steps", "2"]
    assert_user_error(
        capsys,
        ["infill", *checkpoint, "--prefix", "Caf\u00e9 ", "--length", "4"],
        r"cannot encode the prompt: character '\u00e9' is not in the tokenizer's \d+-character",
    )
    assert_user_error(
        capsys,
        ["infill", *checkpoint, "--template", "To be [MASK:500]"],
        r"\[MASK:500\] asks for more tokens than the model's context of 32",
    )
    assert_user_error(capsys, ["infill", *checkpoint, "--template", "no markers"], r"no \[MASK:n\] marker")
    assert_user_error(capsys, ["sample", *checkpoint, "--length", "0"], r"--length must be > 0; got 0")
    # past the context, sample goes block by block; a trajectory is of one window only
    assert_user_error(
        capsys, ["sample", *checkpoint, "--length", "33", "--trajectory", "t.html"], r"one window of at most 32"
    )
    assert_user_error(capsys, ["infill", *checkpoint, "--length", "-3"], r"--length must be > 0; got -3")
    assert_user_error(capsys, ["sample", *checkpoint, "--num-samples", "0"], r"--num-samples must be > 0")
    assert_user_error(capsys, ["sample", *checkpoint, "--length", "abc"], r"invalid int value: 'abc'")
    target = tmp_path / "nowhere" / "out.jsonl"
    assert_user_error(capsys, ["sample", *checkpoint, "--out", str(target)], r"folder .*nowhere does not exist")
    assert_user_error(
        capsys,
        ["sample", *checkpoint, "--trajectory", str(tmp_path / "t.gif")],
        r"--trajectory must name a .html or .png file",
    )
    assert not list(tmp_path.iterdir())


def broken_copy(trained_run, tmp_path):
    source = sorted((trained_run / "checkpoints").iterdir())[-1]
    target = tmp_path / "broken"
    shutil.copytree(source, target)
    return target


def test_broken_checkpoints(capsys, trained_run, tmp_path):
    assert_user_error(capsys, ["sample", "--checkpoint", str(tmp_path / "none")], r"checkpoint .*none does not exist")
    (tmp_path / "empty").mkdir()
    assert_user_error(capsys, ["info", "--checkpoint", str(tmp_path / "empty")], r"holds no checkpoint: expected")

    missing = broken_copy(trained_run, tmp_path / "a")
    (missing / "model.safetensors").unlink()
    assert_user_error(capsys, ["info", "--checkpoint", str(missing)], r"incomplete: model.safetensors is missing")

    truncated = broken_copy(trained_run, tmp_path / "b")
    data = (truncated / "ema.safetensors").read_bytes()
    (truncated / "ema.safetensors").write_bytes(data[: len(data) // 2])
    assert_user_error(capsys, ["sample", "--checkpoint", str(truncated)], r"ema.safetensors is truncated or corrupt")

    other_vocab = broken_copy(trained_run, tmp_path / "c")
    (other_vocab / "tokenizer.json").write_text('{"type": "char", "chars": "abc"}')
    assert_user_error(
        capsys, ["sample", "--checkpoint", str(other_vocab)], r"tokenizer has 3 tokens but the model was built for \d+"
    )

    garbled = broken_copy(trained_run, tmp_path / "d")
    (garbled / "config.json").write_text("{not json")
    assert_user_error(capsys, ["info", "--checkpoint", str(garbled)], r"config.json is not valid JSON")


def test_resume_with_a_different_config(capsys, micro_yaml, tmp_path):
    from scorediff.cli import main

    out_dir = tmp_path / "runs"
    assert main(train_args(micro_yaml, out_dir, "--name", "r", "--num-samples", "0")) == 0
    capsys.readouterr()
    before = sorted(p.name for p in (out_dir / "r" / "checkpoints").iterdir())
    assert_user_error(
        capsys,
        ["train", "--resume", str(out_dir / "r"), "--model.hidden_size=64"],
        r"cannot resume .*: model.hidden_size differs from the run's config \(32 there, 64 now\)",
    )
    assert_user_error(capsys, ["train", "--resume", str(tmp_path)], r"is not a run directory")
    assert sorted(p.name for p in (out_dir / "r" / "checkpoints").iterdir()) == before
