"""What a hostile user (or a hostile model folder) tried on ``scorediff chat``, ``info`` and ``plan --train.init``:
each case here once broke the promise of one line on stderr, exit code 2, no traceback and nothing written or
replaced. Chat templates are code shipped with a model; the ones here looped for hours, filled the memory or escaped
as a traceback."""

import json
import shutil
from pathlib import Path

import pytest
from cli_run import assert_user_error, run_cli
from jinja2.sandbox import ImmutableSandboxedEnvironment

import scorediff
from scorediff.data import template_sandbox
from scorediff.data.chat import ChatTemplate

TINY_LLAMA = Path(__file__).parents[1] / "fixtures" / "llama_family" / "tiny_llama"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]

#: templates that ran (nearly) forever or without bound, and what stops them now; the step budget is lowered to
#: 20,000 in these tests so that they stop in a moment (the default, 2,000,000, takes a few seconds)
SIXTEEN_MI = "{% set s = 'x' * 16000000 %}"
RUNAWAY = {
    "nested loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "steps"),
    "fan-out recursion": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
        "steps",
    ),
    "ten million slices": ("{{ [1, 2] | slice(10000000) | list | length }}", "steps"),
    "a recursive loop's loop(...)": (
        "{% for i in range(100000) recursive %}{% if loop.depth < 3 %}{{ loop(range(100000)) }}{% endif %}{% endfor %}",
        "steps",
    ),
    "a 2 GB repetition": ("{{ 'x' * 2000000000 }}", "longer than 16,777,216"),
    "doubling by ~": (
        "{% set ns = namespace(s='x') %}{% for c in 'x' * 40 %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        "longer than",
    ),
    "doubling by join": (
        "{% set ns = namespace(s='x') %}{% for c in 'x' * 40 %}{% set ns.s = [ns.s, ns.s] | join %}{% endfor %}",
        "longer than",
    ),
    "a huge power": ("{{ 10 ** 1000000000 }}", r"\*\* makes an integer past 65,536 bits"),
    "squaring": (
        "{% set ns = namespace(x=0) %}{% set ns.x = 2 ** 32767 %}"
        "{% for i in range(16) %}{% set ns.x = ns.x * ns.x %}{% endfor %}",
        r"\* makes an integer past 65,536 bits",
    ),
    "lipsum": ("{{ lipsum(1000000) }}", "'lipsum' is undefined"),
    # one step that would build gigabytes or more: refused by its arguments, before it is built
    "center": ("{{ '' | center(10 ** 10) }}", "a number larger than 16,777,216"),
    "% width from the tuple": ("{{ '%*s' % (10 ** 10, '') }}", "a number larger than 16,777,216"),
    "range": ("{{ range(10 ** 20) }}", "a number larger than 16,777,216"),
    "format width": ("{{ '{:>9999999999}'.format('') }}", "width or precision of 8\\+ digits"),
    "format width from an argument": ("{{ '{:>{}}'.format('', '9999999999') }}", "or a nested field"),
    "% width": ("{{ '%9999999999s' % '' }}", "width or precision of 8\\+ digits"),
    "format filter width": ("{{ '%9999999999s' | format('') }}", "width or precision of 8\\+ digits"),
    "indent": ("{{ 'x' | indent(10 ** 9) }}", "a number larger than 16,777,216"),
    "indent of many lines": ("{{ ('x\\n' * 1000000) | indent(10000) }}", "longer than 16,777,216"),
    "batch": ("{{ [1] | batch(10 ** 10, 0) | list }}", "a number larger than 16,777,216"),
    "wordwrap": ("{{ ('x' * 100000) | wordwrap(1, wrapstring='y' * 100000) }}", "longer than 16,777,216"),
    "replace": ("{{ ('x' * 1000) | replace('', 'y' * 16000000) }}", "longer than 16,777,216"),
    "str.replace": ("{{ ('x' * 1000).replace('', 'y' * 16000000) }}", "longer than 16,777,216"),
    "str.expandtabs": ("{{ ('\\t' * 1000000).expandtabs(100000) }}", "longer than 16,777,216"),
    "join": (SIXTEEN_MI + "{{ ([s] * 1000) | join }}", "longer than 16,777,216"),
    "join by attribute": (SIXTEEN_MI + "{{ ([{'a': s}] * 1000) | join(attribute='a') }}", "longer than 16,777,216"),
    "str.join": (SIXTEEN_MI + "{{ ''.join([s] * 1000) }}", "longer than 16,777,216"),
    # a list short in length and long in writing: 1,000 references to one text of 16 M characters written out
    "a list written out": (SIXTEEN_MI + "{{ [s] * 1000 }}", "longer than 16,777,216"),
    "| string": (SIXTEEN_MI + "{{ ([s] * 1000) | string | length }}", "longer than 16,777,216"),
    "| tojson": (SIXTEEN_MI + "{{ ([s] * 1000) | tojson | length }}", "longer than 16,777,216"),
    "| tojson with a wide indent": ("{{ ([[]] * 1000000) | tojson(indent=10000) | length }}", "longer than 16,777,216"),
    "~ of a list": (SIXTEEN_MI + "{{ ([s] * 1000 ~ '') | length }}", "longer than 16,777,216"),
    "% of a list": (SIXTEEN_MI + "{{ ('%s' % ([s] * 1000,)) | length }}", "longer than 16,777,216"),
    "str.format of a list": (SIXTEEN_MI + "{{ '{}'.format([s] * 1000) | length }}", "longer than 16,777,216"),
    "a namespace written out": (SIXTEEN_MI + "{% set ns = namespace(l=[s] * 1000) %}{{ ns }}", "longer than"),
    # found by a red-team read of the sizes: each built hundreds of megabytes to gigabytes before it was refused, ran
    # for minutes in one step, or was never refused
    "many format fields": (SIXTEEN_MI + "{{ ('{0}' * 1000).format(s) | length }}", "longer than 16,777,216"),
    "format_map": (SIXTEEN_MI + "{{ ('{a}' * 1000).format_map({'a': s}) | length }}", "longer than 16,777,216"),
    "% of a mapping": (SIXTEEN_MI + "{{ (('%(a)s' * 1000) % {'a': s}) | length }}", "longer than 16,777,216"),
    "format filter fields": (SIXTEEN_MI + "{{ ('%(a)s' * 1000) | format(a=s) | length }}", "longer than 16,777,216"),
    "str.translate": (SIXTEEN_MI + "{{ ('x' * 1000).translate({120: s}) | length }}", "longer than 16,777,216"),
    "bytes.replace": (
        "{{ ('x' * 10000).encode().replace('x'.encode(), ('y' * 3000000).encode()) | length }}",
        "longer than 16,777,216",
    ),
    "a case change": ("{{ ('\u00df' * 16000000) | upper | length }}", "longer than 16,777,216"),
    "urlize": ("{{ 'http://a.example ' | urlize }}", "No filter named 'urlize'"),
    "pprint": ("{{ [1] | pprint }}", "No filter named 'pprint'"),
    "a list of every character": ("{{ ('\u4e00' * 16000000) | list | length }}", "more than 1,048,576 items"),
    "a split into items": ("{{ ('x ' * 8000000).split() | length }}", "more than 1,048,576 items"),
    "a repeated list": ("{{ ([0] * 1000) * 10000 }}", "more than 1,048,576 items"),
    "in over references": (
        SIXTEEN_MI + "{% set t = 'x' * 15999999 ~ 'y' %}{{ t in [s] * 10000 }}",
        "longer than 16,777,216",
    ),
    "a test over references": (
        SIXTEEN_MI + "{% set t = 'x' * 15999999 ~ 'y' %}{{ t is in([s] * 10000) }}",
        "longer than 16,777,216",
    ),
    "a long attribute path": (
        "{{ (['x'] * 500) | sort(attribute='0.' * 1000000 ~ '0') }}",
        "an attribute path of more than 64 parts",
    ),
    "a template of megabytes": ("{{ 'x' }}" * 300_000, "the template is 2,700,000 characters long"),
    # no hook sees a literal built: 2 ** 24 references to a text of 1,000 (16 G characters) by 24 doublings
    "doubled literals": (
        "{% set a0 = ['x' * 1000] %}"
        + "".join(f"{{% set a{i + 1} = [a{i}, a{i}] %}}" for i in range(24))
        + "{{ a24 }}",
        "longer than 16,777,216",
    ),
}
#: templates whose steps each do much work (a sum, search, comparison or sort of a million items), so that the step
#: budget lets them run for hours; the deadline stops them (lowered here to 0.2 s)
SLOW = {
    "sum": "{{ big | sum }}",
    "in": "{{ 1 in big }}",
    "==": "{{ big == big | list }}",
    "sort": "{{ (big | sort)[0] }}",
}
#: templates whose Python error escaped the render as a traceback
RAISING = {
    "{{ 1 / 0 }}": "division by zero",
    # the message, a list nested 5,000 deep, was written outside the render: its RecursionError escaped
    "{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}"
    "{{ raise_exception(ns.x) }}": "maximum recursion depth exceeded",
    "{{ '{a}'.format() }}": "'a'",
    "{{ (10 ** 400) | float }}": "int too large to convert to float",
    "{{ 2.0 ** 10000 }}": ".*out of range",
}


@pytest.fixture
def small_budget(monkeypatch):
    monkeypatch.setattr(template_sandbox, "MAX_STEPS", 20_000)


def _folder(tmp_path: Path, template: str) -> Path:
    folder = tmp_path / "instruct"
    shutil.copytree(TINY_LLAMA, folder)
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template, "bos_token": "<s>"}))
    return folder


@pytest.mark.parametrize("name", sorted(RUNAWAY))
def test_a_runaway_template_is_refused(small_budget, name):
    template, pattern = RUNAWAY[name]
    with pytest.raises(scorediff.InputError, match=f"chat template cannot be rendered: .*{pattern}"):
        ChatTemplate(template).render(MESSAGES)


@pytest.mark.parametrize("name", sorted(SLOW))
def test_a_template_of_long_steps_is_stopped_by_the_deadline(monkeypatch, name):
    monkeypatch.setattr(template_sandbox, "MAX_SECONDS", 0.2)
    template = "{% set big = [0] * 1000000 %}{% for i in range(700) %}{% for j in range(700) %}" + SLOW[name]
    with pytest.raises(scorediff.InputError, match="chat template cannot be rendered: it takes more than 0.2 seconds"):
        ChatTemplate(template + "{% endfor %}{% endfor %}").render(MESSAGES)


def test_a_loop_spends_one_step_an_item(monkeypatch):
    """The ``environment.metered_loop(...)`` put around each loop spent a step of its own on every item."""
    monkeypatch.setattr(template_sandbox, "MAX_STEPS", 1000)  # range(...) is one step, each item another
    assert ChatTemplate("{% for i in range(999) %}.{% endfor %}").render(MESSAGES) == "." * 999
    with pytest.raises(scorediff.InputError, match="it takes more than 1,000 steps"):
        ChatTemplate("{% for i in range(1000) %}.{% endfor %}").render(MESSAGES)
    # a template is compiled once and rendered many times: each render starts with the whole budget
    for _ in range(3):
        assert ChatTemplate("{% for i in range(999) %}.{% endfor %}").render(MESSAGES) == "." * 999


@pytest.mark.parametrize("template", sorted(RAISING))
def test_a_template_that_raises_is_refused(template):
    with pytest.raises(scorediff.InputError, match=f"chat template cannot be rendered: {RAISING[template]}"):
        ChatTemplate(template).render(MESSAGES)


def test_chat_refuses_a_runaway_or_raising_template_in_one_line(capsys, tmp_path, small_budget):
    out = tmp_path / "answer.txt"
    for template, pattern in [RUNAWAY["nested loops"], ("{{ 1 / 0 }}", "division by zero")]:
        folder = _folder(tmp_path, template)
        argv = ["chat", "--checkpoint", str(folder), "hi", "--length", "4", "--out", str(out)]
        assert_user_error(capsys, argv, f"chat template cannot be rendered: .*{pattern}")
        assert not out.exists()
        shutil.rmtree(folder)


#: what real templates use: loop variables, recursive loops, namespaces, filters over messages, tojson, string
#: methods and operators; the budget must change none of their output
WELL_BEHAVED = [
    "{{ bos_token }}{% for m in messages %}{{ loop.index }}/{{ loop.length }}{{ m['role'] | upper }}: "
    "{{ m['content'] | trim }}{% if not loop.last %}\n{% endif %}{% endfor %}{{ eos_token }}",
    "{% set ns = namespace(system='') %}{% for m in messages if m.role == 'system' %}{% set ns.system = m.content %}"
    "{% endfor %}[{{ ns.system }}]{{ messages | map(attribute='content') | join(' | ') }}",
    "{% for item in [[1, [2, 3]], 4] recursive %}{% if item is iterable %}({{ loop(item) }}){% else %}{{ item }}"
    "{% endif %}{% endfor %}{{ messages | tojson }}{{ '%s-%d' % ('a', 2) }}{{ 'ab' * 3 }}{{ 2 ** 10 }}",
    "{% for m in messages | reverse %}{{ m.content.split(' ') | join('_') }}{{ '|' ~ m.role ~ '|' }}{% endfor %}"
    "{% for c in 'abc' %}{% if c == 'b' %}{% continue %}{% endif %}{{ c }}{% endfor %}",
    "{{ messages }}{{ messages | string | length }}{{ messages | tojson(indent=2) }}{{ [messages, ['\\n\t\x01']] }}"
    "{% set ns = namespace(m=messages) %}{{ ns }}{{ messages[0].items() | list }}{{ '%s' % (messages,) ~ messages }}",
]


@pytest.mark.parametrize("template", WELL_BEHAVED)
def test_the_budget_changes_no_template_within_it(template):
    plain = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    plain.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
    expected = plain.from_string(template).render(messages=MESSAGES, bos_token="<s>", eos_token="</s>")
    assert ChatTemplate(template, "<s>", "</s>").render(MESSAGES, add_generation_prompt=False) == expected
    assert expected  # each renders some text


def test_chat_names_a_template_file_that_is_not_text(capsys, tmp_path):
    folder = _folder(tmp_path, "{{ messages[0]['content'] }}")
    (folder / "chat_template.jinja").write_bytes(b"\xff\xfe{{ x }}")
    argv = ["chat", "--checkpoint", str(folder), "hi", "--length", "4"]
    assert_user_error(capsys, argv, r"cannot read .*chat_template.jinja: 'utf-8' codec can't decode")


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "chat_template.jinja"])
def test_chat_never_writes_over_the_models_own_files(capsys, tmp_path, name):
    """``--out`` naming a file of the model folder wrote the answer over it (the model's weights, once)."""
    folder = _folder(tmp_path, "{{ messages[0]['content'] }}")
    (folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    before = (folder / name).read_bytes()
    argv = ["chat", "--checkpoint", str(folder), "hi", "--length", "4", "--out", str(folder / name)]
    assert_user_error(capsys, argv, rf"{name} is a file of the model or run folder .*; write the output elsewhere")
    assert (folder / name).read_bytes() == before
    code, _, err = run_cli(capsys, [*argv[:-1], str(folder / "answers.txt")])  # beside the model: written
    assert code == 0, err
    assert (folder / "answers.txt").read_text().strip()


@pytest.mark.parametrize("index", ["[1]", '"text"', "null"])
def test_info_refuses_a_shard_index_that_is_no_object(capsys, tmp_path, index):
    """``model.safetensors.index.json`` holding a JSON list escaped as an AttributeError traceback."""
    folder = tmp_path / "sharded"
    shutil.copytree(TINY_LLAMA, folder)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text(index)
    argv = ["info", "--checkpoint", str(folder)]
    assert_user_error(capsys, argv, r"model.safetensors.index.json has no weight_map of names to shard files")


def test_a_model_without_a_tokenizer_says_so_whatever_its_format(capsys, tmp_path, trained_run):
    """A checkpoint with no tokenizer (a GGUF whose splitting rule is not GPT-2's, SEDD's layout without GPT-2's
    files) was said to have 'no tokenizer.json', a file a GGUF never has."""
    bare = tmp_path / "bare"
    shutil.copytree(trained_run / "checkpoints" / sorted((trained_run / "checkpoints").iterdir())[-1].name, bare)
    (bare / "tokenizer.json").unlink()
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be\n" * 20)
    without = rf"{bare} comes without a tokenizer, so "
    assert_user_error(capsys, ["sample", "--checkpoint", str(bare), "--steps", "2"], without + "its tokens cannot be")
    assert_user_error(capsys, ["eval", "--checkpoint", str(bare), "--data", str(text)], without + "--data text cannot")
