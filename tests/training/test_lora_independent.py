"""LoRA's merged checkpoint weights against peft's own forward: the network that trained (peft's adapted layers,
``x W^T + (alpha / r) dropout(x) A^T B^T``) and the ordinary network loaded from ``lora.ordinary`` (what every
checkpoint reader loads) compute the same outputs. The existing LoRA tests check the merge against the merge
formula restated, so a scale that peft and the merge disagree on passed them; here peft is the reference."""

import pytest
import torch

from scorediff.builders import build_model, build_objective
from scorediff.config import load_config
from scorediff.training.lora import inject, ordinary

NUM_TOKENS, LENGTH = 11, 16
SMALL = ["model.hidden_size=32", "model.n_heads=4", f"model.seq_len={LENGTH}", "model.n_blocks=2", "model.dropout=0"]
NETWORKS = {  # preset and the arguments of its forward
    "llama-ar": ("tiny-llama-ar", lambda x: (x,)),
    "dit-diffusion": ("tiny", lambda x: (x, torch.tensor([0.3, 1.7], dtype=torch.float64))),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize(("rank", "alpha"), [(4, 8.0), (2, 3.0)])
def test_the_merged_network_computes_what_the_adapted_one_did(name, rank, alpha):
    pytest.importorskip("peft")
    preset, arguments = NETWORKS[name]
    config = load_config(preset, [*SMALL, f"train.lora_rank={rank}", f"train.lora_alpha={alpha}",
                                  "train.lora_dropout=0.1"])  # fmt: skip
    objective = build_objective(config, NUM_TOKENS)
    torch.manual_seed(0)
    adapted = build_model(config, objective)
    with torch.no_grad():  # the DiT's zero-initialised modulation and output would hide every block's adapters
        for parameter in adapted.parameters():
            parameter.normal_(std=0.3)
    inject(adapted, config)
    with torch.no_grad():  # B starts at zero in peft; every adapter made non-zero so that the update matters
        for parameter_name, parameter in adapted.named_parameters():
            if ".lora_" in parameter_name:
                parameter.normal_(std=0.2)
    adapted = adapted.double().eval()
    plain = build_model(config, objective).double().eval()
    merged = ordinary(adapted.state_dict(), config)
    plain.load_state_dict(merged, strict=True)
    x = torch.randint(0, NUM_TOKENS, (2, LENGTH), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = adapted(*arguments(x)), plain(*arguments(x))
        unadapted = build_model(config, objective).double().eval()
        frozen = {k.replace(".base_layer", ""): v for k, v in adapted.state_dict().items() if ".lora_" not in k}
        unadapted.load_state_dict(frozen, strict=True)  # the frozen weights alone
        before = unadapted(*arguments(x))
    finite = torch.isfinite(expected)
    assert torch.equal(finite, torch.isfinite(got))
    # float32 outputs, and the merge is computed in float32 (``lora.merge``); a wrong scale moves them by 1e-2
    torch.testing.assert_close(got[finite], expected[finite], rtol=0, atol=2e-5)
    assert (before[finite] - expected[finite]).abs().max() > 1e-2  # the adapters move the output: the test can fail
