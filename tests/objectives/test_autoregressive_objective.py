"""The autoregressive objective's likelihood is exactly the chain rule of its model's conditionals."""

import torch

from scorediff.model import ModelConfig
from scorediff.objectives import AutoregressiveObjective


def test_nll_equals_a_brute_force_chain_rule_sum():
    objective = AutoregressiveObjective(num_tokens=5)
    torch.manual_seed(0)
    model = objective.build_model(ModelConfig(hidden_size=32, n_blocks=2, n_heads=2, seq_len=8)).eval()
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    x_0 = torch.randint(0, 5, (3, 8), generator=torch.Generator().manual_seed(1))
    nll = objective.nll(model, x_0)
    assert nll.dtype == torch.float64 and nll.shape == (3,)

    # one prefix at a time: p(x_i | BOS, x_<i) from a fresh forward of exactly that prefix
    brute = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for i in range(8):
            prefix = torch.cat([torch.full((3, 1), objective.bos_id), x_0[:, :i]], dim=1)
            conditional = model(prefix)[:, -1].double()  # (B, V)
            brute -= conditional.gather(1, x_0[:, i : i + 1]).squeeze(1)
    torch.testing.assert_close(nll, brute, rtol=1e-6, atol=1e-5)  # float32 forward passes
    # and it is a likelihood: over every sequence of length 2 the probabilities sum to 1
    model_two = objective.build_model(ModelConfig(hidden_size=32, n_blocks=1, n_heads=2, seq_len=2)).eval()
    pairs = torch.cartesian_prod(torch.arange(5), torch.arange(5))
    total = objective.nll(model_two, pairs).neg().exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64), rtol=0, atol=1e-6)


def test_training_loss_is_the_nll():
    objective = AutoregressiveObjective(num_tokens=7)
    torch.manual_seed(0)
    model = objective.build_model(ModelConfig(hidden_size=32, n_blocks=1, n_heads=2, seq_len=6)).eval()
    x_0 = torch.randint(0, 7, (4, 6), generator=torch.Generator().manual_seed(2))
    batch = objective.draw(x_0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(objective.loss(model, batch).double(), objective.nll(model, x_0))
    # an untrained model is near uniform over the 7 data tokens (the BOS logit is excluded)
    assert abs(float(objective.nll(model, x_0).mean()) / 6 - torch.log(torch.tensor(7.0))) < 0.05


def test_given_a_prompt_the_nll_is_that_of_the_answer():
    """``-log p(answer | prompt) = -log p(prompt, answer) + log p(prompt)``, the prompt scored alone; training
    on the same batch computes the same number."""
    objective = AutoregressiveObjective(num_tokens=5)
    torch.manual_seed(0)
    model = objective.build_model(ModelConfig(hidden_size=32, n_blocks=2, n_heads=2, seq_len=8)).eval()
    x_0 = torch.randint(0, 5, (3, 8), generator=torch.Generator().manual_seed(4))
    given = torch.zeros_like(x_0, dtype=torch.bool)
    given[:, :3] = True
    conditional = objective.nll(model, x_0, given=given)
    expected = objective.nll(model, x_0) - objective.nll(model, x_0[:, :3])
    torch.testing.assert_close(conditional, expected, rtol=1e-6, atol=1e-5)  # float32 forward passes
    batch = objective.draw(x_0, torch.Generator().manual_seed(0), given=given)
    torch.testing.assert_close(objective.loss(model, batch).double(), conditional)
