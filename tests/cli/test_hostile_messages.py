"""What a hostile user tried on ``messages`` records (``train --init --data``, ``sample --prompts``, ``eval --data``):
each case once broke the promise of one line on stderr, exit code 2, no traceback, nothing of the user's replaced,
or gave an answer other than the one asked for."""

import json
import shutil
from pathlib import Path

import pytest
from cli_run import assert_user_error, run_cli

import scorediff
from scorediff.data.chat import ChatTemplate
from scorediff.errors import InputError

TINY_LLAMA = Path(__file__).parents[1] / "fixtures" / "llama_family" / "tiny_llama"
BOS = "<|endoftext|>"
TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}[{{ message['role'] }}] {{ message['content'] }} [end]"
    "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
)
GOOD = [
    {"messages": [{"role": "user", "content": "say a word."}, {"role": "assistant", "content": "tea."}]},
    {"messages": [{"role": "user", "content": "another?"}, {"role": "assistant", "content": "coffee."}]},
]


def instruct(root: Path, name: str, template: str = TEMPLATE) -> Path:
    """The tiny LLaMA (context 64) with ``template`` as its chat template."""
    folder = root / name
    shutil.copytree(TINY_LLAMA, folder)
    (folder / "chat_template.jinja").write_text(template)
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": BOS, "eos_token": BOS}))
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return instruct(tmp_path_factory.mktemp("hostile_messages"), "instruct")


def write(path: Path, records: list) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def sft_argv(model: Path, data: str, root: Path) -> list[str]:
    """``train --init model --data data`` as an autoregressive run of the model's own shape."""
    train = {"batch_size": 2, "max_steps": 1, "eval_every": 0, "preview_samples": 0, "compile": False}
    network = vars(scorediff.load(model, device="meta").model.config)
    values = {"objective": "autoregressive", "model": network, "data": {"cache_dir": str(root / "cache")}}
    values["train"] = train
    (root / "sft.yaml").write_text(json.dumps(values))
    return ["train", "--config", str(root / "sft.yaml"), "--init", str(model), "--data", data, "--out",
            str(root / "runs"), "--quiet", "--num-samples", "0"]  # fmt: skip


STRAYS = {
    "none": ({"foo": 1}, "has no 'messages' list"),
    "prompt": ({"prompt": "hi"}, "has no 'messages' list"),  # a text record to sample, none to train on
    "tokens": ({"tokens": [1, 2], "given": [True, False]}, "is a tokens record"),
    "text": ({"prompt": "hi", "answer": "yo"}, "is a text record"),
}


@pytest.mark.parametrize("command", ["train", "sample", "eval"])
@pytest.mark.parametrize("stray", sorted(STRAYS))
def test_a_record_without_messages_in_a_messages_file(capsys, tmp_path, model, command, stray):
    """A record of no kind (or a prompt without an answer) among messages records once escaped as a KeyError
    traceback from every command that reads them; so did a text or tokens record in ``sample --prompts``."""
    record, said = STRAYS[stray]
    data = write(tmp_path / "chat.jsonl", [*GOOD, record])
    argv = {
        "train": sft_argv(model, data, tmp_path),
        "sample": ["sample", "--checkpoint", str(model), "--prompts", data, "--length", "40"],
        "eval": ["eval", "--checkpoint", str(model), "--data", data],
    }[command]
    assert_user_error(capsys, argv, rf"chat.jsonl:3 {said} in a file of messages records; one file holds one kind$")
    assert not (tmp_path / "runs").exists()


def test_a_prompt_record_with_a_messages_field_is_answered_as_a_prompt(capsys, tmp_path, model):
    """A ``prompt``/``answer`` record that also holds ``messages``: its prompt was answered, then the output was
    written as a messages record (a traceback when ``messages`` was not a conversation, the wrong question when it
    was)."""
    other = [{"role": "user", "content": "something else"}]
    records = [{"prompt": "to be", "answer": "x", "messages": "junk"}, {"prompt": "or not", "answer": "y",
                "messages": other}]  # fmt: skip
    data = write(tmp_path / "prompts.jsonl", records)
    code, out, err = run_cli(capsys, ["sample", "--checkpoint", str(model), "--prompts", data, "--length", "12",
                                      "--greedy"])  # fmt: skip
    assert code == 0, err
    answers = [json.loads(line) for line in out.splitlines()]
    assert [(a["index"], a["prompt"], a["reference"]) for a in answers] == [(0, "to be", "x"), (1, "or not", "y")]
    assert all("messages" not in a for a in answers)


def test_a_lone_user_message_is_refused_for_its_role(capsys, tmp_path, model):
    """A conversation ending with the user's turn was refused as if it lacked a message before the answer."""
    data = write(tmp_path / "chat.jsonl", [*GOOD, {"messages": [{"role": "user", "content": "hi"}]}])
    assert_user_error(
        capsys, ["eval", "--checkpoint", str(model), "--data", data], r"chat.jsonl:3: the last message must be the "
        "assistant's; got 'user'$"
    )  # fmt: skip


def test_a_conversation_far_past_the_context_names_the_context(capsys, tmp_path, model):
    """10,000 turns against a context of 64: the refusal named a context of 65 (the dropped BOS counted in)."""
    turns = [{"role": role, "content": "q"} for _ in range(5000) for role in ("user", "assistant")]
    data = write(tmp_path / "chat.jsonl", [*GOOD, {"messages": turns}])
    assert_user_error(
        capsys, ["eval", "--checkpoint", str(model), "--data", data],
        r"chat.jsonl:3: the text is far longer than the model's context of 64 tokens$",
    )  # fmt: skip


def test_a_template_with_the_random_filter_is_refused(capsys, tmp_path):
    """``|random`` made each render differ: ``train`` refused a different line on each run (the conversation's
    rendering not beginning with the prompt's), or trained, as the draws fell. Now the filter does not exist."""
    random_end = TEMPLATE.replace("[end]", "[end{{ ['', '.']|random }}]")
    folder = instruct(tmp_path, "random", random_end)
    data = write(tmp_path / "chat.jsonl", GOOD)
    for _ in range(2):
        assert_user_error(
            capsys, sft_argv(folder, data, tmp_path), r"chat.jsonl:1: .* cannot be rendered: No filter named 'random'"
        )
    assert not (tmp_path / "runs").exists()
    with pytest.raises(InputError, match="No filter named 'random'"):
        ChatTemplate("{{ range(5)|random }}").render(GOOD[0]["messages"])


def test_a_template_that_leaves_out_the_answer_is_refused(capsys, tmp_path):
    """A template that writes no assistant turn (and no generation prompt): every answer was empty, so SFT learnt
    the end token alone and eval scored only it, without a word."""
    no_assistant = "{% for m in messages if m['role'] != 'assistant' %}{{ m['content'] }} [end]{% endfor %}"
    folder = instruct(tmp_path, "no_assistant", no_assistant)
    data = write(tmp_path / "chat.jsonl", GOOD)
    pattern = r"chat.jsonl:1: the chat template leaves the assistant's message out: the answer is empty$"
    assert_user_error(capsys, ["eval", "--checkpoint", str(folder), "--data", data], pattern)
    assert_user_error(capsys, sft_argv(folder, data, tmp_path), pattern)
    assert not (tmp_path / "runs").exists()


def test_the_output_file_may_not_be_the_input(capsys, tmp_path, model):
    """``sample --out`` the ``--prompts`` file and ``eval --json`` the ``--data`` file (here through a link)
    replaced the user's records with the answers or the results."""
    data = write(tmp_path / "chat.jsonl", GOOD)
    before = Path(data).read_bytes()
    (tmp_path / "link.jsonl").symlink_to(data)
    argv = ["sample", "--checkpoint", str(model), "--prompts", data, "--length", "40", "--out", data]
    assert_user_error(capsys, argv, r"--out .*chat.jsonl is the --prompts file; the answers go to another file")
    argv = ["eval", "--checkpoint", str(model), "--data", data, "--json", str(tmp_path / "link.jsonl")]
    assert_user_error(capsys, argv, r"--json .*link.jsonl is the --data file; the results go to another file")
    assert Path(data).read_bytes() == before
