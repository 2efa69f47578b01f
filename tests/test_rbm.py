"""RBM model and mathematics: exact enumeration, likelihood gradients, CD/PCD, AIS, and scikit-learn's BernoulliRBM."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from factories import binary_data, random_rbm
from sklearn.neural_network import BernoulliRBM

from hfgen.methods import rbm as methods
from hfgen.models.rbm import RBMModel


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def terms_close(a, b, atol, rtol=0.0):
    for name in ("weight", "visible_bias", "hidden_bias"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=atol, rtol=rtol)


def terms_distance(a, b):
    return math.sqrt(
        sum(float((getattr(a, n) - getattr(b, n)).square().sum()) for n in ("weight", "visible_bias", "hidden_bias"))
    )


def joint_enumeration(model):
    """All (v, h) pairs and p(v, h) by brute force over the 2^(V+H) joint states, from the energy alone."""
    v = methods.binary_states(model.config.num_visible)
    h = methods.binary_states(model.config.num_hidden)
    vv = v.repeat_interleave(h.shape[0], 0)
    hh = h.repeat(v.shape[0], 1)
    with torch.no_grad():
        log_p = -model.energy(vv, hh)
    return vv, hh, log_p - torch.logsumexp(log_p, 0)


# --- enumeration and the model's formulas --------------------------------------------------------------------


def test_binary_states_enumerates_in_binary_order():
    states = methods.binary_states(3)
    assert states.shape == (8, 3) and states.dtype == torch.float64
    torch.testing.assert_close(states[5], torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    assert len({tuple(row.tolist()) for row in states}) == 8
    with pytest.raises(ValueError, match="num_units"):
        methods.binary_states(21)


def test_hidden_conditional_factorises_and_matches_enumeration():
    model = random_rbm()
    h = methods.binary_states(6)
    for v in binary_data(5, 10, seed=1):
        with torch.no_grad():
            log_joint = -model.energy(v.expand(h.shape[0], -1), h)
            p_h = model.p_h_given_v(v[None])[0]
        enumerated = torch.softmax(log_joint, 0)
        factorised = (h * p_h + (1 - h) * (1 - p_h)).prod(-1)
        torch.testing.assert_close(factorised, enumerated, rtol=1e-12, atol=1e-15)


def test_visible_conditional_factorises_and_matches_enumeration():
    model = random_rbm()
    v = methods.binary_states(10)
    for h in binary_data(3, 6, seed=2):
        with torch.no_grad():
            enumerated = torch.softmax(-model.energy(v, h.expand(v.shape[0], -1)), 0)
            p_v = model.p_v_given_h(h[None])[0]
        torch.testing.assert_close((v * p_v + (1 - v) * (1 - p_v)).prod(-1), enumerated, rtol=1e-12, atol=1e-15)


def test_free_energy_is_minus_log_sum_over_hidden_states():
    model = random_rbm()
    v, h = methods.binary_states(10), methods.binary_states(6)
    with torch.no_grad():
        energies = -model.energy(v.repeat_interleave(64, 0), h.repeat(1024, 1)).reshape(1024, 64)
        torch.testing.assert_close(torch.logsumexp(energies, 1), -model.free_energy(v), rtol=1e-13, atol=1e-12)
        torch.testing.assert_close(model(v).free_energy, model.free_energy(v))


@pytest.mark.parametrize(("num_visible", "num_hidden"), [(10, 6), (5, 8)])
def test_log_partition_of_zero_weights_is_sum_of_softplus(num_visible, num_hidden):
    model = random_rbm(num_visible, num_hidden, weight_std=0.0, bias_std=1.5)
    expected = F.softplus(model.visible_bias).sum() + F.softplus(model.hidden_bias).sum()
    torch.testing.assert_close(methods.exact_log_partition(model), expected.detach(), rtol=1e-13, atol=0)


@pytest.mark.parametrize(("num_visible", "num_hidden"), [(10, 6), (6, 10)])
def test_log_partition_and_likelihood_match_joint_enumeration(num_visible, num_hidden):
    # (10, 6) sums over the hidden layer, (6, 10) over the visible one; both against all 2^16 joint states.
    model = random_rbm(num_visible, num_hidden, weight_std=1.0)
    v, h = methods.binary_states(num_visible), methods.binary_states(num_hidden)
    with torch.no_grad():
        joint = -model.energy(v.repeat_interleave(h.shape[0], 0), h.repeat(v.shape[0], 1))
        log_z = methods.exact_log_partition(model)
        torch.testing.assert_close(log_z, torch.logsumexp(joint, 0), rtol=1e-13, atol=0)
        log_p = methods.log_likelihood(model, v)
    torch.testing.assert_close(torch.logsumexp(log_p, 0), torch.zeros((), dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(methods.log_likelihood(model, v, log_partition=log_z), log_p)


@pytest.mark.parametrize(("num_visible", "num_hidden"), [(10, 6), (6, 10)])
def test_exact_gradient_is_data_minus_model_term_and_autograd(num_visible, num_hidden):
    model = random_rbm(num_visible, num_hidden)
    data = binary_data(7, num_visible, seed=3)
    gradient = methods.exact_likelihood_gradient(model, data)

    # Autograd of the enumerated mean log-likelihood.
    model.zero_grad()
    methods.log_likelihood(model, data).mean().backward()
    autograd = methods.RBMTerms(model.weight.grad, model.visible_bias.grad, model.hidden_bias.grad)
    terms_close(gradient, autograd, atol=1e-12)

    # Data term with h summed out, model term E_p(v,h)[(v hᵀ, v, h)] over every joint state.
    vv, hh, log_p = joint_enumeration(model)
    p = log_p.exp()
    with torch.no_grad():
        p_h = model.p_h_given_v(data)
    data_term = methods.RBMTerms(data.T @ p_h / 7, data.mean(0), p_h.mean(0))
    model_term = methods.RBMTerms((vv * p[:, None]).T @ hh, p @ vv, p @ hh)
    terms_close(gradient, data_term - model_term, atol=1e-12)


# --- contrastive divergence ------------------------------------------------------------------------------------


def test_cd_surrogate_loss_gradient_equals_data_minus_model_estimate():
    model = random_rbm()
    data = binary_data(9, 10, seed=4)
    out = methods.contrastive_divergence(model, data, k=2, generator=seeded(1))
    assert out.negative_samples.shape == data.shape
    model.zero_grad()
    out.loss.backward()
    estimate = methods.likelihood_gradient(model, data, out.negative_samples)
    minus = methods.RBMTerms(-model.weight.grad, -model.visible_bias.grad, -model.hidden_bias.grad)
    terms_close(minus, estimate, atol=1e-12)
    # The chain is k Gibbs sweeps from the data, drawn from the generator.
    chain = methods.gibbs_chain(model, data, 2, generator=seeded(1))
    torch.testing.assert_close(out.negative_samples, chain.sample)


def test_cd_gradient_approaches_the_exact_gradient_as_k_grows():
    model = random_rbm(6, 4, weight_std=1.5)
    data = binary_data(8, 6, seed=5)
    exact = methods.exact_likelihood_gradient(model, data)
    chains = data.repeat(4000, 1)  # 32,000 chains: Monte-Carlo error about 0.005
    errors = {}
    for k in (1, 50):
        negatives = methods.contrastive_divergence(model, chains, k=k, generator=seeded(k)).negative_samples
        errors[k] = terms_distance(methods.likelihood_gradient(model, data, negatives), exact)
    assert errors[50] < 0.02
    assert errors[1] > 10 * errors[50]  # CD-1's bias: its chains stay near the data


def test_persistent_chains_converge_to_the_model_term():
    model = random_rbm(6, 4, weight_std=1.5)
    data = binary_data(8, 6, seed=5)
    exact = methods.exact_likelihood_gradient(model, data)
    chains, g = torch.ones(32_000, 6, dtype=torch.float64), seeded(2)  # far from p: all pixels on
    first = None
    for _ in range(50):
        out = methods.contrastive_divergence(model, data, k=1, generator=g, chains=chains)
        chains = out.negative_samples
        first = chains if first is None else first
    assert terms_distance(methods.likelihood_gradient(model, data, first), exact) > 0.1  # one sweep from all-on
    assert terms_distance(methods.likelihood_gradient(model, data, chains), exact) < 0.02
    # Same generator state, same chains: PCD continues the chains it is given.
    again = methods.contrastive_divergence(model, data, k=1, generator=seeded(2), chains=torch.ones(32_000, 6).double())
    torch.testing.assert_close(again.negative_samples, first)


# --- scikit-learn's BernoulliRBM --------------------------------------------------------------------------------


def sklearn_rbm_with_weights(model, random_state):
    reference = BernoulliRBM(n_components=model.config.num_hidden, random_state=random_state)
    reference.components_ = model.weight.detach().numpy().T.copy()
    reference.intercept_hidden_ = model.hidden_bias.detach().numpy().copy()
    reference.intercept_visible_ = model.visible_bias.detach().numpy().copy()
    reference.n_features_in_ = model.config.num_visible
    return reference


def test_hidden_probabilities_and_pseudo_likelihood_match_sklearn():
    model = random_rbm()
    data = binary_data(50, 10, seed=6)
    reference = sklearn_rbm_with_weights(model, random_state=123)
    with torch.no_grad():
        np.testing.assert_allclose(model.p_h_given_v(data).numpy(), reference.transform(data.numpy()), rtol=1e-12)
        # score_samples flips bit randint(0, V) of each row with a fresh RandomState(random_state).
        flips = torch.from_numpy(np.random.RandomState(123).randint(0, 10, 50))
        ours = methods.pseudo_log_likelihood(model, data, flip_index=flips)
    np.testing.assert_allclose(ours.numpy(), reference.score_samples(data.numpy()), rtol=1e-12)
    free = reference._free_energy(data.numpy())
    np.testing.assert_allclose(model.free_energy(data).detach().numpy(), free, rtol=1e-12)


def test_pseudo_likelihood_with_drawn_flips_is_reproducible_and_unbiased():
    model = random_rbm()
    v = binary_data(1, 10, seed=7)
    with torch.no_grad():
        drawn = methods.pseudo_log_likelihood(model, v.expand(4000, -1), generator=seeded(3))
    torch.testing.assert_close(drawn, methods.pseudo_log_likelihood(model, v.expand(4000, -1), generator=seeded(3)))
    # E over the flipped bit of V log σ(F(ṽ) − F(v)) = Σ_i log p(v_i | v_{−i}).
    every_bit = methods.pseudo_log_likelihood(model, v.expand(10, -1), flip_index=torch.arange(10)).detach()
    with torch.no_grad():
        conditionals = []
        for i in range(10):
            both = v.repeat(2, 1)
            both[0, i], both[1, i] = 0.0, 1.0
            log_p = -model.free_energy(both)
            conditionals.append(log_p[int(v[0, i])] - torch.logsumexp(log_p, 0))
    torch.testing.assert_close(every_bit.mean() / 10, torch.stack(conditionals).mean(), rtol=1e-12, atol=0)
    assert abs(float(drawn.mean()) - float(every_bit.mean())) < 4 * float(drawn.std()) / math.sqrt(4000)
    with pytest.raises(ValueError, match="flip_index"):
        methods.pseudo_log_likelihood(model, v, flip_index=torch.tensor([10]))


def test_likelihood_gradient_matches_a_sklearn_pcd_update():
    model = random_rbm()
    data = binary_data(6, 10, seed=8)
    reference = sklearn_rbm_with_weights(model, random_state=7)
    reference.learning_rate, reference.batch_size = 0.1, 6
    h_samples = binary_data(6, 6, seed=9).numpy()
    reference.h_samples_ = h_samples.copy()
    before = (reference.components_.copy(), reference.intercept_visible_.copy(), reference.intercept_hidden_.copy())
    reference.partial_fit(data.numpy())
    # sklearn's negative particles: v ~ p(v | h_samples_) with uniforms from RandomState(random_state).
    p_v = 1 / (1 + np.exp(-(h_samples @ before[0] + before[1])))
    v_neg = torch.from_numpy((np.random.RandomState(7).uniform(size=p_v.shape) < p_v).astype(np.float64))
    gradient = methods.likelihood_gradient(model, data, v_neg)
    np.testing.assert_allclose(reference.components_ - before[0], 0.1 * gradient.weight.numpy().T, atol=1e-13)
    np.testing.assert_allclose(
        reference.intercept_visible_ - before[1], 0.1 * gradient.visible_bias.numpy(), atol=1e-13
    )
    np.testing.assert_allclose(reference.intercept_hidden_ - before[2], 0.1 * gradient.hidden_bias.numpy(), atol=1e-13)


# --- reconstruction error ---------------------------------------------------------------------------------------


def test_reconstruction_error():
    data = binary_data(20, 10, seed=10)
    independent = random_rbm(weight_std=0.0)  # W = 0: p(v | h) = σ(b) whatever h
    expected = (data - torch.sigmoid(independent.visible_bias.detach())).square().sum(-1)
    torch.testing.assert_close(methods.reconstruction_error(independent, data, seeded()), expected)
    model = random_rbm()
    with torch.no_grad():
        h = model.sample_h(data, seeded(4))
        expected = (data - model.p_v_given_h(h)).square().sum(-1)
    torch.testing.assert_close(methods.reconstruction_error(model, data, seeded(4)), expected)


# --- annealed importance sampling -------------------------------------------------------------------------------


@pytest.mark.parametrize("base", ["zero", "base_rate"])
def test_ais_log_partition_within_three_standard_errors(base):
    model = random_rbm(weight_std=1.0)
    base_bias = methods.base_rate_visible_bias(binary_data(30, 10, seed=11)) if base == "base_rate" else None
    out = methods.annealed_importance_sampling(
        model, num_chains=500, num_betas=1000, base_visible_bias=base_bias, generator=seeded(5)
    )
    exact = float(methods.exact_log_partition(model).detach())
    assert 1e-4 < out.standard_error < 0.02
    assert abs(out.log_partition - exact) < 3 * out.standard_error
    b_base = torch.zeros(10, dtype=torch.float64) if base_bias is None else base_bias
    assert out.log_base_partition == pytest.approx(float(F.softplus(b_base).sum()) + 6 * math.log(2), rel=1e-14)
    assert out.log_weights.shape == (500,)
    # A log-likelihood from the estimate: −F(v) − log Ẑ, in nats.
    data = binary_data(4, 10, seed=12)
    torch.testing.assert_close(
        methods.log_likelihood(model, data, out.log_partition),
        methods.log_likelihood(model, data) + (exact - out.log_partition),
    )


def test_ais_is_exact_when_the_base_model_has_the_same_marginal_over_v():
    # W = 0 and b_A = b: every log-weight equals Σ_j softplus(c_j) − H log 2, so the estimate is exact, error 0.
    model = random_rbm(weight_std=0.0, bias_std=1.0)
    out = methods.annealed_importance_sampling(
        model, num_chains=10, num_betas=7, base_visible_bias=model.visible_bias.detach(), generator=seeded()
    )
    assert out.log_partition == pytest.approx(float(methods.exact_log_partition(model).detach()), rel=1e-13)
    assert out.standard_error < 1e-12


def test_effective_sample_size_is_kish_s_and_spans_one_to_the_number_of_weights():
    assert methods.effective_sample_size(torch.full((50,), -3.0)) == pytest.approx(50, rel=1e-12)  # equal weights
    assert methods.effective_sample_size(torch.tensor([0.0, -800.0, -900.0])) == pytest.approx(1, rel=1e-12)
    log_w = torch.randn(40, generator=seeded(2), dtype=torch.float64) * 3 + 500  # exp overflows float64
    w = torch.exp(log_w - 500)
    kish = float(w.sum() ** 2 / w.square().sum())
    assert methods.effective_sample_size(log_w) == pytest.approx(kish, rel=1e-12)
    assert 1 <= kish <= 40
    with pytest.raises(ValueError, match="`log_weights` must be a finite 1-D tensor"):
        methods.effective_sample_size(torch.tensor([0.0, math.inf]))


def test_ais_is_reproducible_and_checks_its_schedule():
    model = random_rbm()
    a = methods.annealed_importance_sampling(model, num_chains=20, num_betas=50, generator=seeded(6))
    b = methods.annealed_importance_sampling(model, num_chains=20, num_betas=50, generator=seeded(6))
    torch.testing.assert_close(a.log_weights, b.log_weights)
    custom = methods.annealed_importance_sampling(
        model, num_chains=20, betas=torch.linspace(0, 1, 51), generator=seeded(6)
    )
    torch.testing.assert_close(custom.log_weights, a.log_weights)
    for betas in (torch.tensor([0.0, 0.5]), torch.tensor([0.0, 0.6, 0.4, 1.0]), torch.tensor([0.1, 1.0])):
        with pytest.raises(ValueError, match="betas"):
            methods.annealed_importance_sampling(model, betas=betas)
    with pytest.raises(ValueError, match="base_visible_bias"):
        methods.annealed_importance_sampling(model, base_visible_bias=torch.zeros(3))


def test_base_rate_bias_is_the_smoothed_logit_of_pixel_means():
    data = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    bias = methods.base_rate_visible_bias(data, smoothing=1.0)
    torch.testing.assert_close(
        bias, torch.tensor([math.log(3 / 5) - math.log(2 / 5), math.log(1 / 5) - math.log(4 / 5)])
    )
    with pytest.raises(ValueError, match="smoothing"):
        methods.base_rate_visible_bias(data, smoothing=0.0)


# --- input checks -----------------------------------------------------------------------------------------------


def test_which_inputs_must_be_binary():
    model = random_rbm()
    grey = torch.full((2, 10), 0.3, dtype=torch.float64)
    assert model.free_energy(grey).shape == (2,)  # probabilities accepted
    assert model.p_h_given_v(grey).shape == (2, 6)
    assert model.p_v_given_h(torch.full((2, 6), 0.5, dtype=torch.float64)).shape == (2, 10)
    with pytest.raises(ValueError, match="binary"):
        model.energy(grey, torch.zeros(2, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="binary"):
        methods.log_likelihood(model, grey)
    with pytest.raises(ValueError, match="binary"):
        methods.pseudo_log_likelihood(model, grey)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.free_energy(grey + 1.0)
    with pytest.raises(ValueError, match=r"\(N, 10\)"):
        model.p_h_given_v(torch.zeros(2, 9, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating-point"):
        model.p_h_given_v(torch.zeros(2, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="enumeration"):
        methods.exact_log_partition(RBMModel(num_visible=30, num_hidden=25))


def test_config_checks_and_sampling_frequencies():
    with pytest.raises(ValueError, match="num_visible"):
        RBMModel(num_visible=15, num_hidden=4, image_size=4)
    with pytest.raises(ValueError, match="num_hidden"):
        RBMModel(num_visible=16, num_hidden=0)
    assert RBMModel(num_visible=48, num_hidden=4, image_size=4, in_channels=3).image_shape == (3, 4, 4)
    with pytest.raises(ValueError, match="image_size"):
        RBMModel(num_visible=10, num_hidden=4).image_shape  # noqa: B018
    model = random_rbm()
    v = binary_data(1, 10, seed=13).expand(20_000, -1)
    with torch.no_grad():
        frequencies = model.sample_h(v, seeded(8)).mean(0)
        p = model.p_h_given_v(v[:1])[0]
    assert torch.all((frequencies - p).abs() < 4 * torch.sqrt(p * (1 - p) / 20_000))
