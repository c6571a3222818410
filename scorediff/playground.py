"""``scorediff playground``: a local web page (Gradio, the ``[ui]`` extra) to watch a checkpoint fill in text.

The page takes a template with ``[MASK:n]`` spans (or a prefix, a suffix and a length), the sampler or decoding
order, steps, temperature and top-p (and a label and guidance weight for a conditional model), and streams the
sequence as the sampler runs: every network call's input is shown as it happens, masks as ``MASK_GLYPH``. A second
tab scores pasted text (the bound, or the exact NLL of an AR model). An autoregressive or block diffusion
checkpoint only continues a prefix; an AR model's text grows token by token.

Every field the page sends is checked here, so a mistake (an empty box, a seed past 64 bits, a template longer
than the context) is a one-line message naming the field; any failure, expected or not, ends the request with a
message on the page and one line in the server log.

Requests share the loaded model without a lock: its forward pass keeps no state (an AR cache is an argument),
and Gradio runs one request of each button at a time, so at most a Run and a Score overlap. A Run's stream
records only the network calls of its own worker thread.
"""

from __future__ import annotations

import html
import logging
import math
import queue
import threading
from collections.abc import Iterator

import torch

from .errors import InputError, ScorediffError
from .generation import MAX_SEED, generate
from .sampling import SAMPLERS
from .sampling.options import SamplingOptions
from .sampling.orders import ORDERS
from .templates import encode_text, gap, parse_template

MASK_GLYPH = "\u2592"  # one per masked token
DONE = object()
STEPS = (1, 512)
TEMPERATURE = (0.05, 2.0)
TOP_P = (0.05, 1.0)
GUIDANCE = (0.0, 5.0)
log = logging.getLogger(__name__)


class Stopped(Exception):
    """Raised inside the sampler's thread once nobody reads its stream any more (the page went away)."""


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


def whole(field: str, value, low: int, high: int, high_text: str | None = None) -> int:
    """``value`` (a page field) as an int in [low, high], or an ``InputError`` naming ``field``."""
    expected = f"{field}: expected a whole number from {low} to {high_text or high}"
    if value is None or value == "":
        raise InputError(f"{expected}; the box is empty (or not a number)")
    if isinstance(value, float) and value.is_integer() and low <= value <= high:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{expected}; got {shown(value)}")
    return value


def within(field: str, value, low: float, high: float) -> float:
    """``value`` (a page field) as a float in [low, high], or an ``InputError`` naming ``field``."""
    expected = f"{field}: expected a number from {low} to {high}"
    if value is None or value == "":
        raise InputError(f"{expected}; the box is empty (or not a number)")
    # written so that NaN fails too
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise InputError(f"{expected}; got {shown(value)}")
    return float(value)


def shown(value) -> str:
    """A short form of a value for a message (Python will not even print an int past 4,300 digits)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"a {value.bit_length()}-bit number"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def one_line(error: BaseException) -> str:
    """What the page and the server log say about ``error``: its message, or its type and first line."""
    if isinstance(error, ScorediffError):
        return " ".join(str(error).splitlines())
    first = (str(error).strip().splitlines() or [""])[0][:200]
    return f"unexpected error (a bug, not your input): {type(error).__name__}: {first}"


class Session:
    """What the page does with one loaded checkpoint, without any user interface (tested on its own)."""

    def __init__(self, loaded):
        self.loaded = loaded
        self.context = loaded.model.config.seq_len
        self.left_to_right = loaded.objective.left_to_right
        self.mask_id = getattr(loaded.graph, "mask_id", None)
        self.labels = loaded.label_names
        self.samplers = ["(autoregressive)"] if loaded.kind == "autoregressive" else [*SAMPLERS, *ORDERS[1:]]

    def request(self, template: str, prefix: str, suffix: str, length) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens and the given mask, (1, L), from a template or a prefix, a suffix and a length."""
        tokenizer = self.loaded.tokenizer
        template, prefix, suffix = template or "", prefix or "", suffix or ""
        if template.strip():
            if self.left_to_right:
                raise InputError("this model generates left to right: give a prefix and a length, not a template")
            return _tensors(*parse_template(template, tokenizer, self.context))
        if suffix and self.left_to_right:
            raise InputError("this model generates left to right: it can only continue a prefix (no suffix)")
        length = whole("length", length, 1, self.context, f"{self.context} (the model's context)")
        return _tensors(*gap(prefix, length, suffix, tokenizer, self.context))

    def options(self, sampler: str, steps, temperature, top_p, label: str, guidance) -> SamplingOptions:
        """The sampling options of the page's fields, each checked against the range the page offers."""
        if sampler not in self.samplers:
            raise InputError(f"sampler: expected one of {', '.join(self.samplers)}; got {shown(sampler)}")
        options = {"temperature": within("temperature", temperature, *TEMPERATURE),
                   "top_p": within("top-p", top_p, *TOP_P)}  # fmt: skip
        if self.loaded.kind == "autoregressive":
            return SamplingOptions(**options)
        options["steps"] = whole("steps", steps, *STEPS)
        if sampler in SAMPLERS:
            options["predictor"] = sampler
        else:  # an order the model chooses: one position per call, greedy tokens
            options.update(order=sampler, tokens_per_step=1)
        if label and label != "none":
            if label not in self.labels:
                raise InputError(f"label: expected none or one of {', '.join(self.labels)}; got {shown(label)}")
            options.update(label=self.labels.index(label), guidance=within("guidance weight", guidance, *GUIDANCE))
        return SamplingOptions(**options)

    def stream(
        self, tokens: torch.Tensor, given: torch.Tensor, options: SamplingOptions, seed: int = 0
    ) -> Iterator[str]:
        """The text at every network call while the sampler runs in a worker thread, then the result.

        The sampler's own error is raised here, whatever it is; closing the stream early stops the sampler at
        its next network call.
        """
        seed = whole("seed", seed, 0, MAX_SEED, "2**63 - 1 (a seed must fit in 64 bits)")
        states: queue.Queue = queue.Queue()
        stopped = threading.Event()
        seen: list[int] = []

        def watch(module, args):
            if threading.get_ident() != worker.ident:  # another request's call on the shared model
                return
            if stopped.is_set():
                raise Stopped
            x = args[0]
            if self.loaded.kind == "autoregressive":  # with its cache a call sees only the new tokens
                seen.extend(t for t in x[0].tolist() if t != self.loaded.model.bos_id)
                states.put(list(seen))
            elif not self.left_to_right:
                states.put(x[0].tolist())

        def work():
            try:
                states.put(generate(self.loaded.objective, self.loaded.model, tuple(tokens.shape),
                                    options, condition=(tokens, given), seed=seed).tokens[0].tolist())  # fmt: skip
            except BaseException as error:  # handed to the reader, who raises it
                states.put(error)
            finally:
                states.put(DONE)  # whatever happened, the reader stops waiting

        worker = threading.Thread(target=work, daemon=True)
        hook = self.loaded.model.vocab_embed.register_forward_pre_hook(watch)
        worker.start()
        try:
            while (state := states.get()) is not DONE:
                if isinstance(state, BaseException):
                    raise state
                yield render(state, self.loaded.tokenizer, self.mask_id)
        finally:
            stopped.set()
            worker.join()
            hook.remove()

    def score(self, text: str, num_t: int = 16) -> str:
        """The bound (or the exact NLL) of ``text``, cut to the context, in bits per token and as a perplexity."""
        tokens = encode_text(self.loaded.tokenizer, text or "")[: self.context]
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


def page_error(what: str, error: Exception):
    """The ``gr.Error`` that ends a failed request: one line on the page and one in the server log, no traceback
    (Gradio prints one for every error unless told not to)."""
    import gradio as gr

    message = one_line(error)
    if isinstance(error, ScorediffError):
        log.warning("playground: refused a %s: %s", what, message)
    else:
        log.error("playground: the %s failed: %s", what, message)
    return gr.Error(html.escape(message), print_exception=False)  # Gradio shows the message as HTML


def build_app(loaded):
    """The Gradio page for ``loaded``."""
    import gradio as gr

    session = Session(loaded)
    example = "" if session.left_to_right else "To be, or [MASK:12] that is the question"

    def run(template, prefix, suffix, length, sampler, steps, temperature, top_p, label, guidance, seed):
        try:
            tokens, given = session.request(template, prefix, suffix, length)
            options = session.options(sampler, steps, temperature, top_p, label, guidance)
            yield from session.stream(tokens, given, options, seed)
        except Exception as error:  # every failure ends as one line, see page_error
            raise page_error("run", error) from None

    def score(text):
        try:
            return session.score(text)
        except Exception as error:
            raise page_error("score", error) from None

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
                samplers = session.samplers
                sampler = gr.Dropdown(samplers, value=samplers[0], label="sampler or order", elem_id="sampler")
                steps = gr.Slider(*STEPS, value=32, step=1, label="steps", elem_id="steps")
                temperature = gr.Slider(*TEMPERATURE, value=1.0, label="temperature", elem_id="temperature")
                top_p = gr.Slider(*TOP_P, value=1.0, label="top-p", elem_id="top-p")
                seed = gr.Number(label="seed", value=0, precision=0, elem_id="seed")
            with gr.Row(visible=bool(session.labels)):
                label = gr.Dropdown(["none", *session.labels], value="none", label="label")
                guidance = gr.Slider(*GUIDANCE, value=0.0, label="guidance weight")
            button = gr.Button("Run", variant="primary", elem_id="run")
            output = gr.Textbox(label="sequence", lines=6, elem_id="output")
            inputs = [template, prefix, suffix, length, sampler, steps, temperature, top_p, label, guidance, seed]
            # raw values: Gradio's own checks would answer a cleared box with a traceback and a message that
            # names no field
            button.click(run, inputs, output, preprocess=False)
        with gr.Tab("Score"):
            text = gr.Textbox(label="text to score", lines=4, elem_id="score-text")
            score_button = gr.Button("Score", elem_id="score")
            result = gr.Textbox(label="result", elem_id="score-result")
            score_button.click(score, text, result, preprocess=False)
    return app
