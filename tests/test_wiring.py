"""Wiring: each setting reaches the code it is meant to change (a setting silently ignored fails here), and
closed forms pin values that a loose check would let through."""

import math
from dataclasses import replace

import torch
from factories import tiny_args

from hfgen.methods.couplings import couple, sinkhorn_assignment
from hfgen.methods.flow_matching import BrownianBridgePath, VPPath, cfm_loss, sample_times
from hfgen.models import TimeMLP
from hfgen.training import FlowMatchingTask, Trainer


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_the_flow_matching_loss_uses_the_batch_times_drawn_from_beta_1_b(tmp_path):
    args = replace(tiny_args(tmp_path), time_beta=0.3)
    task = FlowMatchingTask(args)
    torch.manual_seed(0)
    model = TimeMLP(dim=2, hidden_size=8, num_layers=1)
    with task.batches(start=0, stream=0) as batches:
        x0, x1, t, generator = next(batches)
    # the times are Beta(1, b) draws of the batch's generator: t = 1 − (1 − u)^{1/b}
    u = torch.rand(args.train_batch_size, generator=seeded_like_batch(task))
    torch.testing.assert_close(t, 1 - (1 - u) ** (1 / 0.3))
    loss = task.loss(model, (x0, x1, t, seeded(1)), torch.device("cpu"))
    torch.testing.assert_close(loss, cfm_loss(model, x0, x1, task.path, t=t, generator=seeded(1)))
    uniform = cfm_loss(model, x0, x1, task.path, t=None, generator=seeded(2))
    assert not torch.isclose(loss, uniform)


def seeded_like_batch(task):
    """The generator of batch 0 advanced past its target and source draws and coupling: what draws the times."""
    from hfgen.utils import batch_generator

    generator = batch_generator(task.args.seed, 0, 0)
    x1 = task.target.sample(task.args.train_batch_size, generator)
    x0 = task.source.sample(task.args.train_batch_size, generator)
    couple(x0, x1, task.args.coupling, generator=generator, sigma=task.args.sigma)
    return generator


def test_sample_times_is_beta_1_b_by_inversion():
    u = torch.rand(5, generator=seeded(3))
    torch.testing.assert_close(sample_times(5, seeded(3), 0.5), 1 - (1 - u) ** 2)
    torch.testing.assert_close(sample_times(5, seeded(3), 1.0), u)


def test_the_sinkhorn_coupling_uses_regularisation_two_sigma_squared():
    # at σ = 0.7 the entropic plan is far from a permutation, so σ² and 2σ² give different draws
    x0, x1 = torch.randn(32, 2, generator=seeded(4)), torch.randn(32, 2, generator=seeded(5))
    _, got = couple(x0, x1, "sinkhorn", generator=seeded(6), sigma=0.7)
    paired, _ = couple(x0, x1, "sinkhorn", generator=seeded(6), sigma=0.7)
    expected = x0[sinkhorn_assignment(x0, x1, 2 * 0.7**2, seeded(6))]
    wrong = x0[sinkhorn_assignment(x0, x1, 0.7**2, seeded(6))]
    assert torch.equal(paired, expected) and torch.equal(got, x1)
    assert not torch.equal(expected, wrong)


def test_the_vp_path_has_the_exact_alpha_at_both_ends():
    path = VPPath(beta_min=0.1, beta_max=20.0)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    big_t = 0.1 + 0.5 * (20.0 - 0.1)  # T(1) = β_min + ½ (β_max − β_min)
    half = 0.1 * 0.5 + 0.5 * (20.0 - 0.1) * 0.25  # T(½)
    expected = torch.tensor([math.exp(-0.5 * big_t), math.exp(-0.5 * half), 1.0], dtype=torch.float64)
    torch.testing.assert_close(path.alpha(t), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(path.sigma(t) ** 2 + path.alpha(t) ** 2, torch.ones(3, dtype=torch.float64))


def test_the_brownian_bridge_velocity_at_the_ends_uses_the_1e8_floor():
    path = BrownianBridgePath(sigma=1.0)
    x0, x1, noise = torch.zeros(2, 2), torch.ones(2, 2), torch.ones(2, 2)
    velocity = path.target_velocity(x0, x1, torch.tensor([0.0, 1.0]), noise=noise)
    # u = x1 − x0 + σ (1 − 2t) / (2 √(t (1 − t))) ε with t (1 − t) floored at 1e-8: ±1 / (2e-4) = ±5000
    torch.testing.assert_close(velocity[:, 0], torch.tensor([1 + 5000.0, 1 - 5000.0]))


def test_validation_scores_the_ema_weights(tmp_path):
    args = replace(tiny_args(tmp_path), ema_decay=0.9, validation_steps=6, checkpointing_steps=0)
    task = FlowMatchingTask(args)
    trainer = Trainer(task)
    result = trainer.train()
    # the last validation (step 6) ran with the EMA weights, which are the final pipeline's: same metrics
    metrics, _ = trainer.evaluate_pipeline(result.pipeline, args.num_validation_samples, 0, args.seed + 6)
    recorded = trainer.history[-1]
    assert recorded["step"] == 6 and recorded["samples_w2"] == metrics["samples_w2"]
    trainer.end()
