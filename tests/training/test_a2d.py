"""AR-to-diffusion adaptation (``training/adapt.py``, ``model.shift``): the adapted network computes its AR parent's
next-token law under causal attention, anneals to full attention, resumes exactly, runs from the command line with
the ``tiny-a2d`` preset keeping the parent's knowledge, and refuses what cannot map in one line."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from micro import micro_values

import scorediff
from scorediff.config import ConfigError, load_config
from scorediff.model import LlamaCausalTransformer, LlamaTransformer, ModelConfig
from scorediff.training import train
from scorediff.training.adapt import adapted_weights, anneal_attention, annealed_reach

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))

from cli_run import assert_user_error, run_cli  # noqa: E402

NUM_TOKENS = 11
SHAPE = dict(arch="llama", hidden_size=32, n_blocks=2, n_heads=4, n_kv_heads=2, seq_len=12)


def parent_and_child(tie_embeddings: bool) -> tuple[LlamaCausalTransformer, LlamaTransformer]:
    """A random AR llama over ``NUM_TOKENS`` tokens (+ BOS) and the shifted diffusion network adapted from it."""
    torch.manual_seed(0)
    parent = LlamaCausalTransformer(ModelConfig(vocab_size=NUM_TOKENS + 1, tie_embeddings=tie_embeddings, **SHAPE))
    for weight in parent.parameters():  # unit norms too, so that every weight matters
        weight.data.add_(0.3 * torch.randn_like(weight))
    config = ModelConfig(
        vocab_size=NUM_TOKENS + 1, tie_embeddings=tie_embeddings, time_conditioning=False, shift=True, **SHAPE
    )
    child = LlamaTransformer(config, mask_id=NUM_TOKENS)
    child.load_state_dict(adapted_weights(parent, child))
    return parent.eval(), child.eval()


@pytest.mark.parametrize("tie_embeddings", [False, True])
def test_under_causal_attention_the_adapted_network_is_its_parent(tie_embeddings):
    parent, child = parent_and_child(tie_embeddings)
    x = torch.randint(0, NUM_TOKENS, (3, SHAPE["seq_len"]))
    x[1, 4:] = NUM_TOKENS  # masks after position 4 are unseen by positions <= 4 under causal attention
    with torch.no_grad():
        bos = torch.full((3, 1), parent.bos_id)
        expected = parent(torch.cat([bos, x[:, :-1]], dim=1))[..., :NUM_TOKENS]  # token i after [BOS] + x[:i]
        child.set_attention_reach(0)
        causal = child.clean_log_probs(x)
        child.set_attention_reach(None)
        full = child.clean_log_probs(x)
    assert causal[..., NUM_TOKENS].eq(-torch.inf).all()  # the mask is never predicted
    torch.testing.assert_close(causal[0, :, :NUM_TOKENS], expected[0], rtol=0, atol=2e-5)
    torch.testing.assert_close(causal[1, :5, :NUM_TOKENS], expected[1, :5], rtol=0, atol=2e-5)
    # under full attention even position 0 (the BOS's output) reads every token, BOS included attending to them,
    # so no position keeps the parent's law: this gap is what the annealing eases
    assert (full[:, 0, :NUM_TOKENS] - expected[:, 0]).abs().max() > 1e-2
    assert (full[..., :NUM_TOKENS] - expected).abs().amax(dim=(0, 2)).min() > 1e-3


def test_a_reach_of_r_lets_position_i_see_tokens_before_i_plus_r_per_block():
    _, child = parent_and_child(False)
    x = torch.randint(0, NUM_TOKENS, (1, SHAPE["seq_len"]))
    child.set_attention_reach(2)
    later, seen = x.clone(), x.clone()
    # position 5's output is the hidden state at input 5 ([BOS] + x), which two blocks of reach 2 give inputs <= 9:
    # the tokens x[:9]
    later[0, 9] = (x[0, 9] + 1) % NUM_TOKENS
    seen[0, 8] = (x[0, 8] + 1) % NUM_TOKENS
    with torch.no_grad():
        base, after_later, after_seen = (child.logits(v, None)[0, 5] for v in (x, later, seen))
    assert torch.equal(base, after_later)
    assert (base - after_seen).abs().max() > 1e-4


def test_the_anneal_widens_from_causal_to_full():
    assert [annealed_reach(s, 4, 12) for s in range(6)] == [0, 3, 6, 9, None, None]
    _, child = parent_and_child(False)
    anneal_attention(child, 1, 4, 12)
    assert child.attention_band.shape == (13, 13) and child.attention_band[0].sum() == 4  # BOS + 3 positions
    anneal_attention(child, 4, 4, 12)
    assert child.attention_band is None


def llama_yaml(corpus, tmp_path, objective, run_name, **train):
    values = micro_values(corpus, tmp_path / "cache", objective, out_dir=str(tmp_path / "runs"), run_name=run_name,
                          **train)  # fmt: skip
    values["model"].update(arch="llama", n_kv_heads=1)
    if objective == "diffusion":
        values["model"].update(time_conditioning=False, shift=True)
        values["diffusion"] = {"mask_count": True}
    path = tmp_path / f"{run_name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss_nats_per_token"] for r in records if "loss_nats_per_token" in r}


def test_a_shifted_annealed_run_saves_loads_and_resumes_exactly(corpus, tmp_path):
    straight = train(load_config(str(llama_yaml(corpus, tmp_path, "diffusion", "straight", attention_anneal_steps=4))),
                     progress=False)  # fmt: skip
    split = load_config(str(llama_yaml(corpus, tmp_path, "diffusion", "split", attention_anneal_steps=4)))
    assert train(split, until_step=3, progress=False).step == 3  # stops inside the anneal
    resumed = train(split, resume=True, progress=False)
    uninterrupted, again = losses(straight.run_dir), losses(resumed.run_dir)
    assert [uninterrupted[s] for s in (4, 5, 6)] == [again[s] for s in (4, 5, 6)]
    plain = train(load_config(str(llama_yaml(corpus, tmp_path, "diffusion", "plain"))), progress=False)
    assert abs(losses(plain.run_dir)[1] - uninterrupted[1]) > 1e-3  # step 0 attended causally
    loaded = scorediff.load(resumed.run_dir)
    assert loaded.model.config.shift and loaded.model.vocab_embed.weight.shape[0] == loaded.model.config.vocab_size + 1
    assert loaded.model.attention_band is None  # a loaded model attends fully


@pytest.mark.parametrize("anneal_steps, warned", [(5, False), (6, True)])
def test_a_run_that_ends_before_its_attention_is_full_says_so(corpus, tmp_path, capsys, anneal_steps, warned):
    """max_steps 6: steps 0-5, full attention from step ``anneal_steps`` on; at 6 the run never trains with it."""
    config = load_config(str(llama_yaml(corpus, tmp_path, "diffusion", "short", attention_anneal_steps=anneal_steps)))
    train(config, progress=False)
    printed = [line for line in capsys.readouterr().out.splitlines() if "attention_anneal_steps" in line]
    assert printed == ([
        "warning: train.attention_anneal_steps=6 reaches full attention only after train.max_steps=6, so this run "
        "never trains with the full attention it is sampled with; set it below max_steps"
    ] if warned else [])  # fmt: skip


def cli_train(capsys, tmp_path, corpus, preset, name, *extra):
    options = ["--train.compile=false", "--train.log_every=1", "--train.eval_every=0", "--train.device=cpu"]
    argv = ["train", "--config", preset, "--out", str(tmp_path / "runs"), "--name", name, "--quiet",
            "--num-samples", "0", f"--data.source={corpus}", f"--data.cache_dir={tmp_path / 'cache'}",
            *options, *extra]  # fmt: skip
    code, out, err = run_cli(capsys, argv)
    assert code == 0, err
    return tmp_path / "runs" / name


def test_the_tiny_a2d_presets_adapt_a_tiny_llama_ar_run_and_keep_what_it_knew(capsys, tmp_path, corpus):
    parent = cli_train(capsys, tmp_path, corpus, "tiny-llama-ar", "parent", "--train.max_steps=40",
                       "--optim.warmup_steps=4", "--train.save_every=0")  # fmt: skip
    for preset in ("tiny-a2d", "tiny-a2d-block"):  # masked diffusion, then blocks of 4
        adapted = cli_train(capsys, tmp_path, corpus, preset, f"{preset}-adapted", f"--init={parent}",
                            "--train.max_steps=3")  # fmt: skip
        scratch = cli_train(capsys, tmp_path, corpus, preset, f"{preset}-scratch", "--train.max_steps=3")
        first_adapted, first_scratch = losses(adapted)[1], losses(scratch)[1]
        print(f"{preset} first loss, nats/token: adapted {first_adapted:.3f}, from scratch {first_scratch:.3f}")
        assert first_adapted < first_scratch - 0.5
    assert scorediff.load(adapted).model.config.block_size == 4


def test_what_cannot_be_adapted_is_refused_in_one_line(capsys, micro_config, corpus, tmp_path):
    dit_parent = train(micro_config("autoregressive", max_steps=1, save_every=0)[0], progress=False)
    llama_parent = train(load_config(str(llama_yaml(corpus, tmp_path, "autoregressive", "ar", max_steps=1))),
                         progress=False)  # fmt: skip
    child = load_config(str(llama_yaml(corpus, tmp_path, "diffusion", "child", max_steps=1)))
    supported = (
        r"an autoregressive llama \(model.arch=llama\) into a masked- or block-diffusion llama with model.shift=true"
    )

    def refused(config, parent, pattern):
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, init=str(parent.checkpoint)))
        with pytest.raises(ConfigError, match=pattern):
            train(config, progress=False)

    refused(child, dit_parent, rf"^train.init: an autoregressive model adapts only as {supported}$")
    unshifted = dataclasses.replace(child, model=dataclasses.replace(child.model, shift=False))
    refused(unshifted, llama_parent, r"^train.init: adapting .* needs .*; model.shift is false$")
    wider = dataclasses.replace(child, model=dataclasses.replace(child.model, hidden_size=48))
    refused(wider, llama_parent, r"^train.init: the weights in .* do not match this run's network .*48")
    dit = dataclasses.replace(child, model=dataclasses.replace(child.model, arch="dit", n_kv_heads=0, shift=False))
    with pytest.raises(ConfigError, match=r"^train.attention_anneal_steps applies to a masked-diffusion llama"):
        train(dataclasses.replace(dit, train=dataclasses.replace(dit.train, attention_anneal_steps=3)), progress=False)
    with pytest.raises(ValueError, match=r"shift applies to arch=llama"):
        ModelConfig(vocab_size=5, shift=True)
    argv = ["train", "--config", str(tmp_path / "child.yaml"), "--name", "cli", "--init", str(dit_parent.checkpoint)]
    assert_user_error(capsys, argv, rf"train.init: an autoregressive model adapts only as {supported}")
    assert not (tmp_path / "runs" / "child").exists() and not (tmp_path / "runs" / "cli").exists()
