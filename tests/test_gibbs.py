"""GibbsScheduler against the enumerated marginal of a tiny RBM, and RBMPipeline conformance."""

import numpy as np
import pytest
import torch
from conformance import seeded
from factories import publish_to_local_hub_cache, random_rbm, tiny_rbm_pipeline
from PIL import Image

from hfgen.methods import rbm as methods
from hfgen.models.rbm import RBMModel, sample_bernoulli
from hfgen.pipelines.base import HfgenPipeline
from hfgen.pipelines.rbm import RBMPipeline, RBMPipelineOutput
from hfgen.schedulers.gibbs import GibbsScheduler


def run_scheduler(model, scheduler, v, sweeps, generator, on_sweep=None):
    scheduler.set_timesteps(sweeps)
    state = v
    with torch.no_grad():
        for t in scheduler.timesteps:
            if scheduler.next_block == "hidden":
                probabilities = model.p_h_given_v(state)
            else:
                probabilities = model.p_v_given_h(state)
            out = scheduler.step(probabilities, t, state, generator=generator)
            state = out.prev_sample
            if out.step_complete and on_sweep is not None:
                on_sweep(int(t), state)
    return state, out


# --- scheduler -------------------------------------------------------------------------------------------------


def test_long_chain_visits_states_with_the_enumerated_marginal():
    model = random_rbm(4, 3, weight_std=1.5)
    with torch.no_grad():
        exact = methods.log_likelihood(model, methods.binary_states(4)).exp()
    assert 0.5 * (exact - 1 / 16).abs().sum() > 0.15  # far from uniform: the test can tell a wrong sampler
    counts = torch.zeros(16, dtype=torch.float64)
    powers = torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64)

    def count(sweep, state):
        if sweep >= 50:  # burn-in
            counts.add_(torch.bincount((state @ powers).long(), minlength=16))

    run_scheduler(model, GibbsScheduler(), torch.zeros(400, 4, dtype=torch.float64), 300, seeded(), count)
    frequencies = counts / counts.sum()  # 100,000 correlated draws
    assert 0.5 * (frequencies - exact).abs().sum() < 0.015


def test_scheduler_chain_equals_the_model_samplers_and_reports_each_half():
    model = random_rbm()
    v0 = (torch.rand(5, 10, generator=seeded(1)) < 0.5).double()
    scheduler = GibbsScheduler()
    scheduler.set_timesteps(2)
    assert scheduler.timesteps.tolist() == [0, 0, 1, 1] and len(scheduler) == 4
    assert scheduler.next_block == "hidden"
    with torch.no_grad():
        p_h = model.p_h_given_v(v0)
        first = scheduler.step(p_h, scheduler.timesteps[0], v0, generator=seeded(2))
        assert first.block == "hidden" and not first.step_complete and first.prev_sample.shape == (5, 6)
        assert scheduler.next_block == "visible"
    state, last = run_scheduler(model, GibbsScheduler(), v0, 3, seeded(2))
    chain = methods.gibbs_chain(model, v0, 3, seeded(2))
    torch.testing.assert_close(state, chain.sample)
    torch.testing.assert_close(last.probabilities, chain.probabilities)
    assert last.block == "visible" and last.step_complete
    assert set(state.unique().tolist()) <= {0.0, 1.0}


def test_scheduler_checks_order_and_inputs():
    scheduler = GibbsScheduler()
    with pytest.raises(RuntimeError, match="set_timesteps"):
        scheduler.step(torch.full((2, 3), 0.5), 0, torch.zeros(2, 4))
    scheduler.set_timesteps(1)
    with pytest.raises(ValueError, match="probabilities"):
        scheduler.step(torch.full((2, 3), 1.5), 0, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="one row per chain"):
        scheduler.step(torch.full((3, 3), 0.5), 0, torch.zeros(2, 4))
    scheduler.step(torch.full((2, 3), 0.5), 0, torch.zeros(2, 4))
    scheduler.step(torch.full((2, 4), 0.5), 0, torch.zeros(2, 3))
    with pytest.raises(RuntimeError, match="only 2 timesteps"):
        scheduler.step(torch.full((2, 3), 0.5), 0, torch.zeros(2, 4))
    tuple_out = GibbsScheduler()
    tuple_out.set_timesteps(1)
    prev, probabilities, block, complete = tuple_out.step(torch.ones(2, 3), 0, torch.zeros(2, 4), return_dict=False)
    torch.testing.assert_close(prev, torch.ones(2, 3))
    assert block == "hidden" and not complete


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_scheduler_refuses_bad_num_inference_steps(steps):
    with pytest.raises((ValueError, TypeError), match="num_inference_steps"):
        GibbsScheduler().set_timesteps(steps)


def test_scheduler_config_round_trip(tmp_path):
    GibbsScheduler().save_pretrained(tmp_path)
    assert (tmp_path / "scheduler_config.json").is_file()
    assert isinstance(GibbsScheduler.from_pretrained(tmp_path), GibbsScheduler)


# --- pipeline --------------------------------------------------------------------------------------------------


def test_pipeline_images_are_the_last_sweeps_probabilities():
    pipe = tiny_rbm_pipeline()
    out = pipe(num_samples=6, num_inference_steps=4, generator=seeded(3))
    assert isinstance(out, RBMPipelineOutput)
    assert out.images.shape == (6, 1, 4, 4) and out.states.shape == (6, 1, 4, 4)
    # The same chain by hand: v_0 ~ Bernoulli(½), then four sweeps, all from one generator.
    g = seeded(3)
    v0 = sample_bernoulli(torch.full((6, 16), 0.5), g)
    chain = methods.gibbs_chain(pipe.model, v0, 4, g)
    torch.testing.assert_close(out.images, chain.probabilities.reshape(6, 1, 4, 4))
    torch.testing.assert_close(out.states, chain.sample.reshape(6, 1, 4, 4))
    assert float(out.images.min()) >= 0 and float(out.images.max()) <= 1


def test_pipeline_same_generator_same_images_and_return_dict_false():
    pipe = tiny_rbm_pipeline()
    a = pipe(num_samples=5, num_inference_steps=3, generator=seeded(4))
    b = pipe(num_samples=5, num_inference_steps=3, generator=seeded(4))
    torch.testing.assert_close(a.images, b.images)
    torch.testing.assert_close(a.states, b.states)
    images, states, trajectory = pipe(num_samples=5, num_inference_steps=3, generator=seeded(4), return_dict=False)
    torch.testing.assert_close(images, a.images)
    assert trajectory is None
    other = pipe(num_samples=5, num_inference_steps=3, generator=seeded(5))
    assert not torch.equal(other.states, a.states)


def test_pipeline_save_load_round_trip(tmp_path):
    pipe = tiny_rbm_pipeline()
    pipe.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tmp_path / "saved" / "scheduler" / "scheduler_config.json").is_file()
    for loaded in (RBMPipeline.from_pretrained(tmp_path / "saved"), HfgenPipeline.from_pretrained(tmp_path / "saved")):
        assert isinstance(loaded, RBMPipeline) and loaded.model.image_shape == (1, 4, 4)
        loaded.set_progress_bar_config(disable=True)
        expected = pipe(num_samples=4, num_inference_steps=5, generator=seeded(6)).images
        torch.testing.assert_close(loaded(num_samples=4, num_inference_steps=5, generator=seeded(6)).images, expected)
    publish_to_local_hub_cache(tmp_path / "saved", "hfgen-tests/rbm-tiny")
    from_hub = RBMPipeline.from_pretrained("hfgen-tests/rbm-tiny")
    from_hub.set_progress_bar_config(disable=True)
    torch.testing.assert_close(
        from_hub(num_samples=4, num_inference_steps=5, generator=seeded(6)).images,
        pipe(num_samples=4, num_inference_steps=5, generator=seeded(6)).images,
    )


def test_pipeline_output_types_and_trajectory():
    pipe = tiny_rbm_pipeline()
    pt = pipe(num_samples=3, num_inference_steps=2, generator=seeded(7), return_trajectory=True)
    assert pt.trajectory.shape == (3, 3, 1, 4, 4)
    torch.testing.assert_close(pt.trajectory[-1], pt.states)
    assert set(pt.trajectory.unique().tolist()) <= {0.0, 1.0}
    array = pipe(num_samples=3, num_inference_steps=2, generator=seeded(7), output_type="np").images
    assert isinstance(array, np.ndarray) and array.shape == (3, 4, 4, 1) and array.dtype == np.float32
    np.testing.assert_allclose(array, pt.images.permute(0, 2, 3, 1).numpy())
    pil = pipe(num_samples=3, num_inference_steps=2, generator=seeded(7), output_type="pil").images
    assert len(pil) == 3 and all(isinstance(im, Image.Image) and im.size == (4, 4) and im.mode == "L" for im in pil)


def test_pipeline_starts_from_given_images():
    pipe = tiny_rbm_pipeline()
    start = torch.rand(2, 1, 4, 4, generator=seeded(8))  # grey levels: read as mean-field values
    out = pipe(num_inference_steps=3, generator=seeded(9), start=start, return_trajectory=True)
    chain = methods.gibbs_chain(pipe.model, start.reshape(2, 16), 3, seeded(9))
    torch.testing.assert_close(out.images, chain.probabilities.reshape(2, 1, 4, 4))
    torch.testing.assert_close(out.trajectory[0], start)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pipe(num_inference_steps=1, start=start + 1)
    with pytest.raises(ValueError, match="start"):
        pipe(num_inference_steps=1, start=torch.rand(2, 1, 5, 5))
    with pytest.raises(ValueError, match="start"):
        pipe(num_inference_steps=1, start="zeros")


@pytest.mark.parametrize(("argument", "value"), [("num_samples", 0), ("num_samples", 2.0), ("num_inference_steps", 0)])
def test_pipeline_refuses_bad_counts(argument, value):
    pipe = tiny_rbm_pipeline()
    kwargs = {"num_samples": 2, "num_inference_steps": 2, argument: value}
    with pytest.raises((ValueError, TypeError), match=argument):
        pipe(**kwargs)


def test_pipeline_checks_components_and_output_type():
    with pytest.raises(ValueError, match="image_size"):
        RBMPipeline(RBMModel(num_visible=16, num_hidden=4), GibbsScheduler())
    with pytest.raises(TypeError, match="scheduler"):
        RBMPipeline(RBMModel(num_visible=16, num_hidden=4, image_size=4), None)
    with pytest.raises(ValueError, match="output_type"):
        tiny_rbm_pipeline()(num_samples=1, num_inference_steps=1, output_type="latent")
