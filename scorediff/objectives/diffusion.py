"""Score entropy discrete diffusion: a graph, a noise schedule and the score entropy loss."""

from __future__ import annotations

import dataclasses
import functools

import torch
from torch import Tensor, nn

from ..checkpoint import Header
from ..errors import InputError
from ..graphs import Graph
from ..graphs.base import expm1_stable
from ..likelihood import elbo
from ..losses import sample_times, weighted_score_entropy
from ..model import ModelConfig, SEDDTransformer, build_network
from ..sampling import TimeIndependentScore, sample
from ..sampling.guidance import check_label, guide_log_probs, guide_log_scores, labelled
from ..sampling.options import OptionError, SamplingOptions
from ..schedules import LogLinearSchedule, NoiseSchedule
from ..types import ScoreFn
from .base import Generation, Objective, WindowFiller, check_scored, inference_copy
from .diffusion_fillers import approximate_filler, order_filler
from .shared import check_greedy, draw_keywords, drop_labels, mask_by_count

#: what a diffusion model's ``sample`` reads of ``SamplingOptions``: all of it
DIFFUSION_OPTIONS = frozenset(field.name for field in dataclasses.fields(SamplingOptions))


class DiffusionObjective(Objective):
    r"""Train a score network with the score entropy; score with the likelihood bound; sample backwards.

    With the absorbing graph and a time-independent network (``model.time_conditioning=false``: RADD, or MDLM's
    SUBS parameterisation) the score at a mask is ``p_theta(x_0 = y | x_t) / (e^sigma_bar - 1)`` with ``p_theta``
    normalised over the data tokens, and the score entropy of a masked position reduces exactly to a weighted
    cross-entropy:

    .. math:: \mathrm{DSE}_i = \frac{-\log p_\theta(x_0^i \mid x_t)}{e^{\bar\sigma} - 1}, \qquad
              \sigma(t)\,\mathrm{DSE}_i = -\frac{1}{t}\log p_\theta(x_0^i \mid x_t) \text{ (log-linear schedule)}

    which the loss then computes directly (MDLM's ``1/t``-weighted masked cross-entropy), without the sum of
    scores that cancels.

    Args:
        graph (Graph): the forward process.
        schedule (NoiseSchedule): its noise schedule.
        t_min (float): smallest training time drawn.
        antithetic (bool): stratify training times across the global batch.
        time_conditioning (bool): whether the network sees the noise level.
        mask_count (bool): draw the number of masked positions instead of each mask (see ``draw``); needs the
            absorbing graph and a time-independent network.
        label_dropout (float): labelled data: the fraction of rows trained with the null label (-1).
        graph_name (str | None): the graph's name in the checkpoint's header (default: absorbing or uniform).
    """

    name = "diffusion"
    exact = False
    described = "a diffusion model"
    option_fields = DIFFUSION_OPTIONS

    def __init__(
        self,
        graph: Graph,
        schedule: NoiseSchedule,
        t_min: float = 1e-3,
        antithetic: bool = True,
        time_conditioning: bool = True,
        mask_count: bool = False,
        label_dropout: float = 0.1,
        graph_name: str | None = None,
    ):
        self.graph, self.schedule = graph, schedule
        self.label_dropout = label_dropout
        self.graph_name = graph_name or ("absorbing" if graph.mask_id is not None else "uniform")
        self.t_min, self.antithetic = t_min, antithetic
        self.num_tokens, self.vocab_size = graph.num_tokens, graph.vocab_size
        self.cross_entropy = graph.mask_id is not None and not time_conditioning
        if mask_count and not (self.cross_entropy and isinstance(schedule, LogLinearSchedule)):
            raise InputError(
                "diffusion.mask_count needs the absorbing graph, the loglinear schedule and "
                "model.time_conditioning=false"
            )
        self.mask_count = mask_count

    def header(self) -> Header:
        return Header(self.name, self.graph_name, self.num_tokens, self.graph.mask_id, self.vocab_size)

    def build_model(self, config: ModelConfig) -> SEDDTransformer:
        absorbing = self.graph.mask_id is not None
        config = dataclasses.replace(
            config, vocab_size=self.vocab_size, scale_by_sigma=config.scale_by_sigma and absorbing
        )
        if not config.time_conditioning and not absorbing:
            raise InputError("model.time_conditioning=false (RADD) needs diffusion.graph=absorbing")
        return build_network("diffusion", config, self.graph.mask_id)

    def draw(
        self, x_0: Tensor, generator: torch.Generator, label: Tensor | None = None, given: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Times ``t`` and noised ``x_t ~ p_t(. | x_0)``; with ``label`` (B,), that label, replaced by the null
        label (-1) in a ``label_dropout`` fraction of the rows; with ``given`` (B, L) bool, those positions (a
        prompt) are never noised, so the loss is that of the answer given the prompt.

        With ``mask_count``: ``k`` uniform on ``1..n`` (``n`` the positions not given; stratified like the
        times), ``k`` of them masked uniformly at random and ``t = k / n``, so the loss weight ``1 / t`` is
        ``n / k``. Since ``int_0^1 (1/t) P(|M| = k) dt = 1 / k`` for independent masking with probability ``t``,
        the expected loss is the same sum over mask sizes, ``sum_k (1/k) E_{|M| = k} sum_{i in M} CE_i``.
        """
        if self.mask_count:
            u = sample_times(x_0.shape[0], antithetic=self.antithetic, t_min=0.0, generator=generator)  # [0, 1)
            batch = self._mask_counts(x_0, u, generator, given)
        else:
            t = sample_times(x_0.shape[0], antithetic=self.antithetic, t_min=self.t_min, generator=generator)
            x_t = self.graph.sample_transition(x_0, self.schedule.total(t), generator=generator)
            batch = {"x_0": x_0, "t": t, "x_t": x_t if given is None else torch.where(given, x_0, x_t)}
        if given is not None:
            batch["given"] = given
        if label is not None:
            batch["label"] = drop_labels(label, self.label_dropout, generator)
        return batch

    def _mask_counts(self, x_0: Tensor, u: Tensor, generator, given: Tensor | None) -> dict[str, Tensor]:
        """``k = 1 + floor(u n)`` of the ``n`` positions not ``given`` masked uniformly, ``t = k / n`` (so that the
        log-linear weight ``sigma(t) / (e^sigma_bar - 1) = 1 / t`` is ``n / k``); ``u`` (B,) in [0, 1)."""
        free = torch.ones_like(x_0, dtype=torch.bool) if given is None else ~given
        masked, count, n = mask_by_count(u, free, generator)  # (B, L), (B,), (B,)
        x_t = torch.where(masked, self.graph.mask_id, x_0)
        return {"x_0": x_0, "t": count.double() / n.clamp_min(1), "x_t": x_t}

    def loss(self, network: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        if "label" in batch:
            network = functools.partial(network, label=batch["label"])
        if self.cross_entropy:
            return self.masked_cross_entropy(network, batch)
        return weighted_score_entropy(
            network, self.graph, self.schedule, batch["x_0"], batch["t"], x_t=batch["x_t"], given=batch.get("given")
        )

    def masked_cross_entropy(
        self, network: nn.Module, batch: dict[str, Tensor], weight: Tensor | None = None
    ) -> Tensor:
        """``sigma(t) sum_i DSE_i`` of a time-independent absorbing network as its weighted cross-entropy, (B,);
        ``weight`` (B,) replaces the rows' ``sigma(t) / (e^sigma_bar - 1)``."""
        x_0, t, x_t = batch["x_0"], batch["t"], batch["x_t"]
        sigma_bar = self.schedule.total(t)
        log_score = network(x_t, sigma_bar)  # (B, L, V): log p_theta(y | x_t) - log(e^sigma_bar - 1) at masks
        esigm1 = expm1_stable(sigma_bar.float())  # (B,)
        log_p = log_score.gather(-1, x_0[..., None]).squeeze(-1) + esigm1.log()[:, None]  # (B, L)
        masked = x_t == self.graph.mask_id
        weight = self.schedule.rate(t).float() / esigm1 if weight is None else weight.float()
        return -(weight[:, None] * torch.where(masked, log_p, 0.0)).sum(-1)

    def nll(
        self,
        model: nn.Module,
        x_0: Tensor,
        generator: torch.Generator | None = None,
        num_t: int = 32,
        given: Tensor | None = None,
        label: Tensor | None = None,
    ) -> Tensor:
        """The bound per sequence, nats (B,); with ``label`` (B,) that of the class-conditional model; with
        ``given`` (B, L) bool, the conditional bound of the other positions given those.

        A time-independent absorbing network is scored in the any-order form (``any_order_nll``); any other
        by the bound over times (``scorediff.elbo``), ``num_t`` stratified times per sequence.
        """
        check_scored(x_0, self.num_tokens, model, given)
        score = model if label is None else functools.partial(model, label=label)
        if self.cross_entropy:
            return self.any_order_nll(score, x_0, generator, num_t, given)
        return elbo(score, self.graph, self.schedule, x_0, num_t=num_t, generator=generator, given=given)

    @torch.no_grad()
    def any_order_nll(
        self, network, x_0: Tensor, generator: torch.Generator | None, num_t: int, given: Tensor | None = None
    ) -> Tensor:
        r"""The bound of a time-independent absorbing network in its any-order form, nats, float64 (B,):

        .. math:: \sum_{k=1}^{L} \frac{1}{k}\, \mathbb E_{|M| = k} \sum_{i \in M} -\log p_\theta(x_0^i \mid x_M)

        (``x_M``: ``x_0`` with the positions ``M`` masked), the mean over uniformly random orders of the chain
        rule that the first-hitting sampler follows, so a bound on that sampler's ``-log p`` (Jensen over
        orders), and the bound over times as ``eps -> 0``. Estimated with ``num_t`` mask counts per sequence,
        stratified over ``1..L`` (an offset drawn per sequence), each with its own random positions and the
        weight ``L / k``. Every draw is at most ``L`` times the largest cross-entropy; the bound over times
        instead weights a rare mask at small ``t`` by ``1 / t``, an estimator of unbounded variance. With ``given``
        the same sum runs over the ``n`` positions not given (``k`` in ``1..n``, weight ``n / k``), the bound of
        ``-log p_theta(x_0[~given] | x_0[given])``.
        """
        if int(num_t) < 1:
            raise InputError(f"num_t must be >= 1; got {num_t}")
        self.graph.check_tokens(x_0, "x_0")
        rows = x_0.shape[0]
        offset = torch.rand(rows, generator=generator, device=x_0.device, dtype=torch.float64)
        total = torch.zeros(rows, dtype=torch.float64, device=x_0.device)
        for k in range(int(num_t)):
            batch = self._mask_counts(x_0, (k + offset) / num_t, generator, given)  # counts stratified in 1..n
            total += self.masked_cross_entropy(network, batch, weight=1 / batch["t"]).double()
        return total / num_t

    def sequence_score(self, model: nn.Module) -> ScoreFn:
        """The network itself: it maps ``(x_t, sigma_bar)`` to the log-score of every neighbour."""
        return model

    def sample(self, model, shape, options=None, *, condition=None, generator=None, device=None) -> Generation:
        """Each window drawn by the reverse process (``options.predictor``, ``steps``, ``temperature``, ``top_p``,
        ``greedy_tail``; ``cache`` skips the network calls on unchanged sequences of a time-independent network), or
        decoded in an order the model chooses (``order`` and its companions; absorbing graph; see
        ``scorediff.sampling.orders``, not a sampler of the model's law). A conditional model's ``label`` and
        ``guidance`` (see ``scorediff.sampling.guidance``). ``trajectory`` keeps every state of one window."""
        options = self.check_options(options)
        if not options.trajectory:
            return super().sample(model, shape, options, condition=condition, generator=generator, device=device)
        if options.adaptive:
            raise OptionError("trajectory", "is drawn by the random order's samplers; an order draws none")
        context = model.config.seq_len
        if shape[1] > context:
            raise OptionError("trajectory", f"is drawn for one window of at most {context} tokens; got {shape[1]}")
        model = inference_copy(model, device, options.bf16)
        score_fn = self.score_fn(model, options.cache, options.label, options.guidance)
        trajectory, stats = sample(
            score_fn, self.graph, self.schedule, shape, options.steps, options.predictor, condition=condition,
            generator=generator, device=device, return_trajectory=True, return_stats=True, **draw_keywords(options),
        )  # fmt: skip
        return Generation(trajectory.tokens, stats, trajectory)

    def window_filler(self, model, options: SamplingOptions, generator, device) -> WindowFiller:
        """Each window drawn by the sampler (``sample``), or decoded in an adaptive order (``decode_in_order``)."""
        score_fn = self.score_fn(model, options.cache, options.label, options.guidance)
        if check_greedy(options):
            if options.approximate_cache != "none":
                return approximate_filler(self, model, options, generator)
            return order_filler(self, score_fn, options, generator)

        def fill(tokens: Tensor, given: Tensor) -> tuple[Tensor, int, int, float]:
            before = getattr(score_fn, "nfe", 0)  # a cached score counts its calls across windows
            x, stats = sample(
                score_fn, self.graph, self.schedule, tokens.shape, options.steps, options.predictor,
                condition=(tokens, given), generator=generator, device=device, return_stats=True,
                **draw_keywords(options),
            )  # fmt: skip
            return x, stats.nfe - before, stats.steps, stats.nfe_per_sequence

        return WindowFiller(fill)

    def denoiser(self, score_fn: ScoreFn):
        """``x -> log p_theta(x_0 | x)`` over the data tokens (B, L, N): a time-independent network's own (cached),
        else read from the score at the noise level whose masked fraction is the row's (absorbing graph:
        ``s_y = p_theta(y | x) / (e^sigma_bar - 1)`` at a mask)."""
        if isinstance(score_fn, TimeIndependentScore):
            return score_fn.clean_log_probs
        sigma_bar_1 = float(self.schedule.total(torch.ones((), dtype=torch.float64)))

        def log_probs(x: Tensor) -> Tensor:
            fraction = (x == self.graph.mask_id).double().mean(-1)  # (B,)
            sigma_bar = (-torch.log1p(-fraction.clamp_max(1 - 1e-9))).clamp(1e-6, sigma_bar_1)
            log_score = score_fn(x, sigma_bar)[..., : self.num_tokens].double()
            return (log_score + expm1_stable(sigma_bar).log()[:, None, None]).log_softmax(-1)

        return log_probs

    def score_fn(
        self, model: nn.Module, cache: bool = True, label: int | None = None, guidance: float = 0.0
    ) -> ScoreFn:
        """The model as a ``ScoreFn``, cached when it is time-independent; a conditional model's class ``label``,
        guided by ``guidance`` (the conditional and the null label are evaluated in one batch)."""
        check_label(model, label, guidance)
        time_independent = getattr(model, "time_independent", False)
        mask_id = self.graph.mask_id
        if label is None:
            return TimeIndependentScore(model.clean_log_probs, cache, mask_id=mask_id) if time_independent else model
        if time_independent:
            log_probs = labelled(model.clean_log_probs, int(label), guidance, guide_log_probs)
            return TimeIndependentScore(log_probs, cache, mask_id=mask_id)
        return labelled(model, int(label), guidance, guide_log_scores)
