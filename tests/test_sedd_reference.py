"""scorediff reproduces the numbers of the original SEDD implementation (fixtures/sedd_reference/math.json)."""

import pytest
import torch
from reference import as_tensor

from scorediff import AbsorbingGraph, GeometricSchedule, LogLinearSchedule, UniformGraph
from scorediff.sampling import AnalyticPredictor, EulerPredictor, denoise_probs

GRAPHS = {"uniform": UniformGraph(7), "absorbing": AbsorbingGraph(7)}
TOL = dict(rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["uniform", "absorbing"])
def test_rate_matrix(sedd_math, name):
    expected = as_tensor(sedd_math["rate_matrices"][name]["Q"])
    torch.testing.assert_close(GRAPHS[name].rate_matrix(), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["uniform", "absorbing"])
def test_score_entropy(sedd_math, name):
    for case in sedd_math["score_entropy"][name]["cases"]:
        inputs = {key: as_tensor(value) for key, value in case["inputs"].items()}
        out = GRAPHS[name].score_entropy(inputs["log_score"], inputs["sigma"], inputs["x"], inputs["x0"])
        torch.testing.assert_close(out, as_tensor(case["output"]), **TOL)


@pytest.mark.parametrize("name", ["uniform", "absorbing"])
def test_staggered_score(sedd_math, name):
    for case in sedd_math["staggered_score"][name]["cases"]:
        inputs = {key: as_tensor(value) for key, value in case["inputs"].items()}
        out = GRAPHS[name].staggered_score(inputs["score"], inputs["dsigma"])
        torch.testing.assert_close(out, as_tensor(case["output"]), **TOL)


@pytest.mark.parametrize("name", ["uniform", "absorbing"])
def test_transp_transition(sedd_math, name):
    for case in sedd_math["transp_transition"][name]["cases"]:
        inputs = {key: as_tensor(value) for key, value in case["inputs"].items()}
        out = GRAPHS[name].transp_transition(inputs["i"], inputs["sigma"])
        torch.testing.assert_close(out, as_tensor(case["output"]), **TOL)


@pytest.mark.parametrize("name", ["uniform", "absorbing"])
def test_reverse_rate(sedd_math, name):
    for case in sedd_math["reverse_rate"][name]["cases"]:
        inputs = {key: as_tensor(value) for key, value in case["inputs"].items()}
        out = GRAPHS[name].reverse_rate(inputs["i"], inputs["score"])
        torch.testing.assert_close(out, as_tensor(case["output"]), **TOL)


@pytest.mark.parametrize(
    "key, schedule",
    [
        ("GeometricNoise(sigma_min=1e-4, sigma_max=20)", GeometricSchedule(1e-4, 20.0)),
        ("LogLinearNoise(eps=1e-3)", LogLinearSchedule(1e-3)),
    ],
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_noise_schedules(sedd_math, key, schedule, dtype):
    values = {name: as_tensor(entry) for name, entry in sedd_math["noise_schedules"][key][dtype].items()}
    total, rate = schedule.total(values["t"]), schedule.rate(values["t"])
    assert total.dtype == getattr(torch, dtype)
    tol = TOL if dtype == "float64" else dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(total, values["total_noise"], **tol)
    torch.testing.assert_close(rate, values["rate_noise"], **tol)


PREDICTOR_CASES = {
    "absorbing_loglinear": (AbsorbingGraph(7), LogLinearSchedule(1e-3)),
    "uniform_loglinear": (UniformGraph(7), LogLinearSchedule(1e-3)),
    "uniform_geometric": (UniformGraph(7), GeometricSchedule(1e-4, 20.0)),
}


def _fixed_score_fn(score, seen):
    def score_fn(x_t, sigma_bar):
        seen.append(sigma_bar)
        return score.log()

    return score_fn


@pytest.mark.parametrize("case", sorted(PREDICTOR_CASES))
def test_predictor_probabilities(sedd_math, case):
    graph, schedule = PREDICTOR_CASES[case]
    ref = sedd_math["predictors"][case]
    x, score, t = (as_tensor(ref["inputs"][key]) for key in ("x", "score", "t"))
    step = ref["inputs"]["step_size"]
    for row in range(x.shape[0]):
        t_row = float(t[row, 0])
        xs, ss = x[row : row + 1], score[row : row + 1]

        seen = []
        probs = AnalyticPredictor().step_probs(_fixed_score_fn(ss, seen), graph, schedule, xs, t_row, t_row - step)
        torch.testing.assert_close(probs[0], as_tensor(ref["analytic"]["probs"])[row], **TOL)
        torch.testing.assert_close(seen[0], as_tensor(ref["analytic"]["curr_sigma"])[row], **TOL)

        seen = []
        probs = EulerPredictor().step_probs(_fixed_score_fn(ss, seen), graph, schedule, xs, t_row, t_row - step)
        torch.testing.assert_close(probs[0], as_tensor(ref["euler"]["probs_one_hot_plus_rev_rate"])[row], **TOL)

        t_final = float(as_tensor(ref["denoiser"]["t"])[row, 0])
        probs = denoise_probs(_fixed_score_fn(ss, []), graph, schedule, xs, t_final)
        expected = as_tensor(ref["denoiser"]["probs"])[row]
        if graph.mask_id is not None:  # the original drops the mask column; ours keeps it at 0
            assert (probs[0, :, graph.mask_id] == 0).all()
            probs = probs[..., : graph.mask_id]
        torch.testing.assert_close(probs[0], expected, **TOL)


@pytest.mark.parametrize("model", ["tiny_absorb", "tiny_absorb_strong", "tiny_uniform", "tiny_uniform_strong"])
def test_loss_from_stored_model_output(sedd_math, model):
    from scorediff import weighted_score_entropy

    ref = sedd_math["loss"][model]
    graph = AbsorbingGraph(50) if ref["graph"] == "absorb" else UniformGraph(50)
    schedule = LogLinearSchedule() if ref["noise"] == "loglinear" else GeometricSchedule(1e-4, 20.0)
    x_0, t, x_t = (as_tensor(ref["inputs"][key]) for key in ("x0", "t", "x_t"))
    log_score = as_tensor(ref["log_score_model_output"]).double()

    def score_fn(x, sigma_bar):
        torch.testing.assert_close(sigma_bar.float(), as_tensor(ref["sigma_total_noise"]), rtol=1e-6, atol=1e-6)
        return log_score

    loss = weighted_score_entropy(score_fn, graph, schedule, x_0, t.double(), x_t=x_t)
    expected = as_tensor(ref["float64_recompute_from_fp32_log_score"]["loss_per_sequence"])
    # t is stored in float32; sigma(t) evaluated in float64 from it differs from the float32 rate by ~1e-7.
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    per_position = graph.score_entropy(log_score, schedule.total(t.double()), x_t, x_0)
    torch.testing.assert_close(
        per_position,
        as_tensor(ref["float64_recompute_from_fp32_log_score"]["score_entropy_per_position"]),
        rtol=1e-6,
        atol=1e-6,
    )
