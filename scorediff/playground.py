"""``scorediff playground``: a local web page (Gradio, the ``[ui]`` extra) to watch a checkpoint fill in text.

The page takes a template with ``[MASK:n]`` spans (or a prefix, a suffix and a length), the sampler or decoding
order, steps, temperature and top-p (and a label and guidance weight for a conditional model), and streams the
sequence as the sampler runs: every network call's input is shown as it happens, masks as ``MASK_GLYPH``. A second
tab scores pasted text (the bound, or the exact NLL of an AR model). An autoregressive or block diffusion
checkpoint only continues a prefix; an AR model's text grows token by token. Mistakes (a bad template, a request
longer than the context) are messages on the page.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator

import torch

from .errors import InputError, ScorediffError
from .generation import generate
from .sampling import SAMPLERS
from .sampling.orders import ORDERS
from .templates import encode_text, gap, parse_template

MASK_GLYPH = "\u2592"  # one per masked token
DONE = object()


def render(tokens: list[int], tokenizer, mask_id: int | None) -> str:
    """Text of ``tokens`` with each mask shown as ``MASK_GLYPH``."""
    out, run = [], []
    for token in tokens:
        if mask_id is not None and token == mask_id:
            out.append(tokenizer.decode(run) + MASK_GLYPH)
            run = []
        else:
            run.append(token)
    return "".join(out) + tokenizer.decode(run)


class Session:
    """What the page does with one loaded checkpoint, without any user interface (tested on its own)."""

    def __init__(self, loaded):
        self.loaded = loaded
        self.context = loaded.model.config.seq_len
        self.left_to_right = loaded.kind == "autoregressive" or bool(getattr(loaded.model.config, "block_size", 0))
        self.mask_id = getattr(loaded.graph, "mask_id", None)
        self.labels = loaded.label_names

    def request(self, template: str, prefix: str, suffix: str, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens and the given mask, (1, L), from a template or a prefix, a suffix and a length."""
        tokenizer = self.loaded.tokenizer
        if template.strip():
            if self.left_to_right:
                raise InputError("this model generates left to right: give a prefix and a length, not a template")
            return _tensors(*parse_template(template, tokenizer, self.context))
        if suffix and self.left_to_right:
            raise InputError("this model generates left to right: it can only continue a prefix (no suffix)")
        return _tensors(*gap(prefix, int(length), suffix, tokenizer, self.context))

    def options(self, sampler: str, steps: int, temperature: float, top_p: float, label: str, guidance: float) -> dict:
        options = {"temperature": float(temperature), "top_p": float(top_p)}
        if self.loaded.kind == "autoregressive":
            return options
        options["steps"] = int(steps)
        if sampler in SAMPLERS:
            options["predictor"] = sampler
        else:  # an order the model chooses: one position per call, greedy tokens
            options.update(order=sampler, tokens_per_step=1)
        if label and label != "none":
            options.update(label=self.labels.index(label), guidance=float(guidance))
        return options

    def stream(self, tokens: torch.Tensor, given: torch.Tensor, options: dict, seed: int = 0) -> Iterator[str]:
        """The text at every network call while the sampler runs in a worker thread, then the result."""
        states: queue.Queue = queue.Queue()
        seen: list[int] = []

        def watch(module, args):
            x = args[0]
            if self.loaded.kind == "autoregressive":  # with its cache a call sees only the new tokens
                seen.extend(t for t in x[0].tolist() if t != self.loaded.model.bos_id)
                states.put(list(seen))
            elif not self.left_to_right:
                states.put(x[0].tolist())

        def work():
            try:
                states.put(generate(self.loaded.objective, self.loaded.model, tuple(tokens.shape),
                                    condition=(tokens, given), seed=seed, **options).tokens[0].tolist())  # fmt: skip
            except (ScorediffError, ValueError) as error:
                states.put(error)
            states.put(DONE)

        hook = self.loaded.model.vocab_embed.register_forward_pre_hook(watch)
        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            while (state := states.get()) is not DONE:
                if isinstance(state, Exception):
                    raise state
                yield render(state, self.loaded.tokenizer, self.mask_id)
        finally:
            hook.remove()
            worker.join()

    def score(self, text: str, num_t: int = 16) -> str:
        """The bound (or the exact NLL) of ``text``, cut to the context, in bits per token and as a perplexity."""
        tokens = encode_text(self.loaded.tokenizer, text)[: self.context]
        if len(tokens) < 2:
            raise InputError("paste at least two tokens of text to score")
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            nats = float(self.loaded.objective.nll(self.loaded.model, torch.tensor([tokens]), generator, num_t)[0])
        per_token, relation = nats / len(tokens), "=" if self.loaded.objective.exact else "<="
        what = "exact negative log-likelihood" if self.loaded.objective.exact else f"bound, {num_t} time samples"
        return (f"{len(tokens)} tokens: bits per token {relation} {per_token / math.log(2):.4f}, "
                f"perplexity {relation} {math.exp(per_token):.3f} ({what})")  # fmt: skip


def _tensors(tokens: list[int], given: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([tokens]), torch.tensor([given])


def build_app(loaded):
    """The Gradio page for ``loaded``."""
    import gradio as gr

    session = Session(loaded)
    samplers = ["(autoregressive)"] if loaded.kind == "autoregressive" else [*SAMPLERS, *ORDERS[1:]]
    example = "" if session.left_to_right else "To be, or [MASK:12] that is the question"

    def run(template, prefix, suffix, length, sampler, steps, temperature, top_p, label, guidance, seed):
        try:
            tokens, given = session.request(template, prefix, suffix, length)
            yield from session.stream(tokens, given, session.options(sampler, steps, temperature, top_p, label,
                                                                     guidance), int(seed))  # fmt: skip
        except ScorediffError as error:
            raise gr.Error(str(error)) from None

    def score(text):
        try:
            return session.score(text)
        except ScorediffError as error:
            raise gr.Error(str(error)) from None

    with gr.Blocks(title="scorediff playground") as app:
        gr.Markdown(f"## scorediff playground\n`{loaded.source or loaded.path}`: {loaded.kind}, "
                    f"context {session.context} tokens. Masked tokens show as {MASK_GLYPH}.")  # fmt: skip
        with gr.Tab("Generate"):
            template = gr.Textbox(label="Template ([MASK:n] for n unknown tokens)", value=example, elem_id="template")
            with gr.Row():
                prefix = gr.Textbox(label="or a prefix", elem_id="prefix")
                suffix = gr.Textbox(label="a suffix", elem_id="suffix", interactive=not session.left_to_right)
                length = gr.Number(label="and a length", value=32, precision=0, elem_id="length")
            with gr.Row():
                sampler = gr.Dropdown(samplers, value=samplers[0], label="sampler or order", elem_id="sampler")
                steps = gr.Slider(1, 512, value=32, step=1, label="steps")
                temperature = gr.Slider(0.05, 2.0, value=1.0, label="temperature")
                top_p = gr.Slider(0.05, 1.0, value=1.0, label="top-p")
                seed = gr.Number(label="seed", value=0, precision=0)
            with gr.Row(visible=bool(session.labels)):
                label = gr.Dropdown(["none", *session.labels], value="none", label="label")
                guidance = gr.Slider(0.0, 5.0, value=0.0, label="guidance weight")
            button = gr.Button("Run", variant="primary", elem_id="run")
            output = gr.Textbox(label="sequence", lines=6, elem_id="output")
            inputs = [template, prefix, suffix, length, sampler, steps, temperature, top_p, label, guidance, seed]
            button.click(run, inputs, output)
        with gr.Tab("Score"):
            text = gr.Textbox(label="text to score", lines=4, elem_id="score-text")
            score_button = gr.Button("Score", elem_id="score")
            result = gr.Textbox(label="result", elem_id="score-result")
            score_button.click(score, text, result)
    return app
