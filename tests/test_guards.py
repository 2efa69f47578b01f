"""Guards every entry point shares: one memory estimate for every sampling path and grid (refused before anything
large is allocated), and the point pipelines' input checks on the lower-level public methods."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch
from factories import (
    tiny_bridge_pipeline,
    tiny_ddpm_pipeline,
    tiny_flow_matching_pipeline,
    tiny_rbm_pipeline,
    tiny_score_sde_pipeline,
    tiny_vae_pipeline,
)
from test_energy import tiny_energy_pipeline
from test_image_pipelines import SIZE, ddpm_pipeline, fm_pipeline, images

import hfgen.utils
from hfgen import HfgenPipeline
from hfgen.methods.energy import langevin_chain
from hfgen.utils import check_sampling_memory

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_megabyte(monkeypatch):
    """Pretend that 10⁶ bytes are available: requests a little larger must be refused before they run."""
    monkeypatch.setattr(hfgen.utils, "available_memory", lambda device=None: 10**6)


# ---------------------------------------------------------------------------------------------- the one estimate


def test_the_estimate_adds_the_trajectory_states_and_the_plan_of_the_steps(monkeypatch):
    # 1000 samples × 3 values × 4 bytes × (4 working + 11 trajectory states) + 10 steps × 64 bytes
    needed = 1000 * 3 * 4 * 15 + 10 * hfgen.utils.SCHEDULE_BYTES_PER_STEP
    monkeypatch.setattr(hfgen.utils, "available_memory", lambda device=None: needed)
    assert check_sampling_memory(1000, 3, num_steps=10, return_trajectory=True) == 1000
    monkeypatch.setattr(hfgen.utils, "available_memory", lambda device=None: needed - 1)
    with pytest.raises(
        ValueError,
        match=r"^`num_samples`=1,000 needs at least 176\.4 KiB to sample \(3 values per sample × 15 copies × 4 bytes: "
        r"4 working, 11 of the trajectory; plus 0\.6 KiB for the plan of 10 steps\), but 176\.4 KiB is available on "
        r"cpu: sample in batches of at most 999 and concatenate them$",
    ):
        check_sampling_memory(1000, 3, num_steps=10, return_trajectory=True)
    # without a trajectory only the plan of the steps grows with them
    monkeypatch.setattr(hfgen.utils, "available_memory", lambda device=None: 10**6)
    with pytest.raises(ValueError, match=r"plan of 1,000,000 steps\), .*: use fewer `num_inference_steps`$"):
        check_sampling_memory(10, 2, num_steps=10**6)
    with pytest.raises(ValueError, match="use fewer `num_inference_steps` or leave out `return_trajectory`$"):
        check_sampling_memory(10, 2, num_steps=10**5, return_trajectory=True)


_ISSUE_CASES = """
import json, resource, torch
from diffusers import UNet2DModel
from hfgen import (EnergyMLP, EnergyPipeline, FlowMatchingImagePipeline, FlowMatchEulerScheduler, GibbsScheduler,
                   LangevinScheduler, RBMModel, RBMPipeline, ScoreSDEPipeline, TimeMLP, VPSDEScheduler)
from hfgen.utils import available_memory
free = available_memory()
resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
capped = available_memory()
unet = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                   down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4)
image_fm = FlowMatchingImagePipeline(unet, FlowMatchEulerScheduler())
rbm = RBMPipeline(RBMModel(num_visible=784, num_hidden=8, image_size=28, in_channels=1), GibbsScheduler())
energy = EnergyPipeline(EnergyMLP(dim=2, hidden_size=8, num_layers=1), LangevinScheduler())
sde = ScoreSDEPipeline(TimeMLP(dim=2, hidden_size=8, num_layers=1), VPSDEScheduler())
cases = [
    lambda: rbm(start=torch.rand(4096, 1, 28, 28), num_inference_steps=10**7, return_trajectory=True),
    lambda: energy(start_samples=torch.zeros(10**5, 2), num_inference_steps=10**7, return_trajectory=True),
    lambda: sde(strength=0.5, start_samples=torch.zeros(100, 2), num_inference_steps=10**9),
    lambda: image_fm(num_samples=4, num_inference_steps=10**9, return_trajectory=True),
    lambda: energy.log_partition(grid_size=200_000),
]
messages = []
for case in cases:
    try:
        case()
        messages.append("no error")
    except ValueError as error:
        messages.append(str(error))
print(json.dumps({"free": free, "capped": capped, "messages": messages}))
"""


def test_the_requests_that_outgrew_memory_are_refused_at_once_under_a_4_gb_cap():
    """The issue's five requests, each of which grew until a 4 GB process died (or the OOM killer took it): the
    available memory counts the process's address-space limit, and each request is refused before it allocates."""
    out = subprocess.run(
        [sys.executable, "-c", _ISSUE_CASES], cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0 < result["capped"] < 4 * 2**30  # the cap minus what the process already maps
    assert result["free"] is None or result["capped"] <= result["free"]
    messages = result["messages"]
    expected = [
        r"^`start`=4,096 needs at least .* 10,000,001 of the trajectory",
        r"^`start_samples`=100,000 needs at least .* 10,000,001 of the trajectory",
        r"^`start_samples`=100 needs at least .*plan of 1,000,000,000 steps",
        r"^`num_samples`=4 needs at least .* 1,000,000,001 of the trajectory",
        r"^log Z on `grid_size`=200,000 \(40,000,000,000 cells\) needs at least 1,490\.1 GiB",
    ]
    for message, pattern in zip(messages, expected, strict=True):
        assert re.search(pattern, message), message


# -------------------------------------------------------------------------- every path through the same estimate


def test_given_start_points_with_a_trajectory_are_refused_like_noise_starts(one_megabyte):
    start = torch.zeros(5000, 2)  # 5000 × 2 × 4 bytes × (4 + 101) = 4.2 MB with 100 steps
    energy, flow, ddpm = tiny_energy_pipeline(), tiny_flow_matching_pipeline(), tiny_ddpm_pipeline(100)
    score, bridge = tiny_score_sde_pipeline(), tiny_bridge_pipeline(num_steps=100)
    calls = {
        "energy": lambda: energy(start_samples=start, num_inference_steps=100, return_trajectory=True),
        "flow matching": lambda: flow(source_samples=start, num_inference_steps=100, return_trajectory=True),
        "flow matching SDEdit": lambda: flow(
            strength=1.0, start_samples=start, num_inference_steps=100, return_trajectory=True
        ),
        "DDPM SDEdit": lambda: ddpm(strength=1.0, start_samples=start, return_trajectory=True),
        "score SDE SDEdit": lambda: score(
            strength=0.5, start_samples=start, num_inference_steps=100, return_trajectory=True
        ),
        "bridge": lambda: bridge.transport(start, return_trajectory=True),
        "DDPM forward trajectory": lambda: ddpm.forward_trajectory(start, list(range(1, 101))),
    }
    names = {"flow matching": "source_samples", "bridge": "x", "DDPM forward trajectory": "original_samples"}
    for label, call in calls.items():
        with pytest.raises(ValueError, match=rf"^`{names.get(label, 'start_samples')}`=5,000 needs at least"):
            call()
    # without the trajectory the same starts run
    assert energy(start_samples=start, num_inference_steps=100).samples.shape == (5000, 2)
    assert bridge.transport(start).shape == (5000, 2)


def test_rbm_start_images_with_a_trajectory_are_refused(one_megabyte):
    pipe = tiny_rbm_pipeline()
    start = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0))  # 64 × 16 × 4 × 1005 = 4.1 MB
    with pytest.raises(ValueError, match=r"^`start`=64 needs at least .* 1,001 of the trajectory"):
        pipe(start=start, num_inference_steps=1000, return_trajectory=True)
    assert pipe(start=start, num_inference_steps=3, return_trajectory=True).trajectory.shape == (4, 64, 1, 4, 4)


def test_a_long_plan_of_steps_counts_without_a_trajectory(monkeypatch):
    monkeypatch.setattr(hfgen.utils, "available_memory", lambda device=None: 10**5)  # < 2,000 × 64 bytes
    score = tiny_score_sde_pipeline()
    with pytest.raises(ValueError, match=r"^`start_samples`=10 needs at least .*plan of 2,000 steps"):
        score(strength=0.5, start_samples=torch.zeros(10, 2), num_inference_steps=2000)
    with pytest.raises(ValueError, match=r"^`num_samples`=10 needs at least .*plan of 2,000 steps"):
        score(num_samples=10, num_inference_steps=2000, sampler="probability_flow", ode_solver="euler")
    # an adaptive solve without a trajectory takes no grid of num_inference_steps
    flow = tiny_flow_matching_pipeline()
    assert flow(num_samples=10, num_inference_steps=10**6, ode_solver="dopri5").samples.shape == (10, 2)


@pytest.mark.parametrize("make", [fm_pipeline, ddpm_pipeline])
def test_image_trajectories_and_sdedit_starts_are_refused_before_sampling(make, one_megabyte):
    pipe = make()
    steps = 10  # both: 10 steps; 400 images × 64 values × 4 bytes × (4 + 11) = 1.5 MB
    with pytest.raises(ValueError, match=r"^`num_samples`=400 needs at least .* 11 of the trajectory"):
        pipe(num_samples=400, num_inference_steps=steps, return_trajectory=True)
    start = torch.rand(400, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"^`start_images`=400 needs at least .* 11 of the trajectory"):
        pipe(strength=1.0, start_images=start, num_inference_steps=steps, return_trajectory=True)
    assert pipe(num_samples=2, num_inference_steps=steps, return_trajectory=True).trajectory.shape[1] == 2


def test_quadrature_grids_are_refused_before_they_are_built(one_megabyte):
    with pytest.raises(ValueError, match=r"^log Z on `grid_size`=512 \(262,144 cells\) needs at least 10\.0 MiB"):
        tiny_energy_pipeline().log_partition()  # the default 512² grid, 40 bytes a cell
    vae = tiny_vae_pipeline()
    with pytest.raises(ValueError, match=r"^quadrature on `grid_size`=200 \(40,000 cells\) needs at least"):
        vae.log_prob(torch.zeros(2, 1, 8, 8), grid_size=200)
    with pytest.raises(ValueError, match=r"^`n`=200 \(40,000 decoded images\) needs at least"):
        vae.latent_grid(n=200)
    with pytest.raises(ValueError, match=r"^`latents`=10,000 needs at least"):
        vae.decode(torch.zeros(10**4, 2))


def test_mala_keeps_a_running_acceptance_count_not_one_tensor_per_step():
    pipe = tiny_energy_pipeline("mala")
    scheduler, alive, seen = pipe.scheduler, [], []
    step = scheduler.step

    def recording_step(*args, **kwargs):
        out = step(*args, **kwargs)
        if out.step_complete:
            alive.append(sum(ref() is not None for ref in seen))
            seen.append(weakref.ref(out.accepted))
            rate.append(out.accepted.double().mean())
        return out

    rate = []
    scheduler.step = recording_step
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    chain = langevin_chain(pipe.model, x, scheduler, 40, torch.Generator().manual_seed(1))
    assert max(alive) <= 1  # the earlier steps' acceptance draws were freed
    assert chain.acceptance_rate == pytest.approx(float(torch.stack(rate).mean()), abs=1e-12)


class _CountingBar:
    """A stand-in progress bar that records its total and counts its updates."""

    def __init__(self, total: int):
        self.total, self.count = total, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int = 1) -> None:
        self.count += n


def test_long_fixed_grid_solves_show_their_progress(monkeypatch):
    bars = []

    def recording_progress_bar(self, iterable=None, total=None):
        if iterable is not None:
            return iterable
        bars.append(_CountingBar(total))
        return bars[-1]

    monkeypatch.setattr(HfgenPipeline, "progress_bar", recording_progress_bar)
    tiny_flow_matching_pipeline("heun")(strength=0.5, start_samples=torch.zeros(3, 2), num_inference_steps=20)
    tiny_score_sde_pipeline()(num_samples=3, num_inference_steps=7, sampler="probability_flow", ode_solver="rk4")
    # steps × evaluations per step (heun2: 2, rk4: 4), each evaluation one update
    assert [(bar.total, bar.count) for bar in bars] == [(10 * 2, 10 * 2), (7 * 4, 7 * 4)]


def test_sdedit_without_a_trajectory_keeps_no_states_and_gives_the_same_points(monkeypatch):
    import hfgen.pipelines.flow_matching as module

    requested, solve = [], module.solve_ode
    monkeypatch.setattr(
        module, "solve_ode", lambda *args, **kwargs: requested.append(kwargs["t_eval"]) or solve(*args, **kwargs)
    )
    flow = tiny_flow_matching_pipeline("midpoint")
    start = torch.randn(6, 2, generator=torch.Generator().manual_seed(3))
    kwargs = {"strength": 0.6, "start_samples": start, "num_inference_steps": 10}
    kept = flow(generator=torch.Generator().manual_seed(4), return_trajectory=True, **kwargs)
    plain = flow(generator=torch.Generator().manual_seed(4), **kwargs)
    assert len(requested[0]) == 7 and requested[1] is None  # the solver keeps the grid's states only when asked
    assert plain.trajectory is None and kept.trajectory.shape == (7, 6, 2)
    assert torch.equal(plain.samples, kept.samples) and plain.nfe == kept.nfe == 12


# --------------------------------------------------------------------------------- lower-level methods, checked


@pytest.mark.parametrize(
    ("t", "error", "words"),
    [
        (math.nan, ValueError, r"`t` must lie in \[0, 1\], the times the velocity is trained on, got nan"),
        (5.0, ValueError, r"`t` must lie in \[0, 1\].*got 5\.0"),
        (-0.5, ValueError, r"got -0\.5"),
        (torch.tensor([0.5, math.inf, 0.5]), ValueError, "got inf"),
        (torch.zeros(4), ValueError, r"`t` must be a scalar or a tensor of shape \(3,\)"),
        ("0.5", TypeError, "`t` must be a float or a tensor"),
    ],
)
def test_image_velocity_field_refuses_times_the_network_is_not_trained_on(t, error, words):
    with pytest.raises(error, match=words):
        fm_pipeline().velocity_field(torch.zeros(3, 1, SIZE, SIZE), t)


@pytest.mark.parametrize(
    ("sample", "error", "words"),
    [
        (
            torch.zeros(2, 1, 4, 4),
            ValueError,
            r"`sample` must be a non-empty tensor of shape \(N, 1, 8, 8\).*\(2, 1, 4, 4\)",
        ),
        (torch.zeros(1, SIZE, SIZE), ValueError, r"`sample` must be a non-empty tensor of shape \(N, 1, 8, 8\)"),
        (torch.zeros(0, 1, SIZE, SIZE), ValueError, "non-empty"),
        ([[0.0]], TypeError, r"`sample` must be a torch.Tensor of shape \(N, 1, 8, 8\), got list"),
        (torch.zeros(2, 1, SIZE, SIZE, dtype=torch.long), TypeError, "`sample` must be a floating-point tensor"),
        (torch.full((2, 1, SIZE, SIZE), math.nan), ValueError, "`sample` must be finite"),
        (torch.zeros(2, 1, SIZE, SIZE, device="meta"), ValueError, "`sample` is a meta tensor"),
    ],
)
def test_image_network_evaluations_refuse_what_is_not_an_image_batch(sample, error, words):
    with pytest.raises(error, match=words):
        fm_pipeline().velocity_field(sample, 0.5)
    with pytest.raises(error, match=words):
        ddpm_pipeline().noise_prediction(sample, 3)
    with pytest.raises(error, match=words):
        ddpm_pipeline().clipped_noise(torch.zeros(2, 1, SIZE, SIZE), 3, sample)


@pytest.mark.parametrize(
    ("timestep", "error", "words"),
    [
        (10**6, ValueError, r"`timestep` must be an int or an integer tensor of steps in 1 … 10, got 1000000"),
        (-5, ValueError, "got -5"),
        (0, ValueError, "got 0"),
        (torch.tensor([3, 11]), ValueError, "got values from 3 to 11"),
        (2.5, TypeError, r"got 2\.5 \(float\)"),
        (True, TypeError, r"got True \(bool\)"),
        (torch.tensor(3.0), TypeError, "got dtype torch.float32"),
        (torch.tensor([3, 3, 3]), ValueError, r"a tensor of shape \(2,\)"),
    ],
)
def test_image_ddpm_refuses_steps_the_network_is_not_trained_on(timestep, error, words):
    pipe, y = ddpm_pipeline(), torch.zeros(2, 1, SIZE, SIZE)
    with pytest.raises(error, match=words):
        pipe.noise_prediction(y, timestep)
    with pytest.raises(error, match=words):
        pipe.clipped_noise(y, timestep, y)


def test_the_checked_network_methods_compute_what_sampling_computes():
    fm, ddpm = fm_pipeline(conditional=True), ddpm_pipeline(conditional=True)
    y = torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        v = fm.velocity_field(y.double(), 0.3, torch.tensor([0, 3]))  # the null class 3 is a network input
        torch.testing.assert_close(v, fm._velocity(y, 0.3, torch.tensor([0, 3]), None).double(), rtol=0, atol=0)
        eps = ddpm.noise_prediction(y, torch.tensor([4, 7]))
        both = [ddpm.noise_prediction(y[i : i + 1], t) for i, t in enumerate((4, 7))]
        torch.testing.assert_close(eps, torch.cat(both), rtol=0, atol=1e-6)
        # one level per image is the same as each image at its own level
        per_image = ddpm.clipped_noise(eps, torch.tensor([4, 7]), y)
        alone = torch.cat([ddpm.clipped_noise(eps[i : i + 1], t, y[i : i + 1]) for i, t in enumerate((4, 7))])
        torch.testing.assert_close(per_image, alone, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="`class_labels` must lie in 0 … 3"):
        fm.velocity_field(y, 0.3, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="`noise_prediction` must have the shape of `sample`"):
        ddpm.clipped_noise(eps[:1], 4, y)


def test_meta_tensors_are_refused_naming_the_argument():
    meta_points = torch.zeros(3, 2, device="meta")
    calls = {
        "x": lambda: tiny_flow_matching_pipeline().log_prob(meta_points),
        "points": lambda: tiny_flow_matching_pipeline().velocity_field(meta_points, 0.5),
        "start_samples": lambda: tiny_energy_pipeline()(start_samples=meta_points, num_inference_steps=2),
        "images": lambda: fm_pipeline().log_prob(torch.zeros(2, 1, SIZE, SIZE, device="meta")),
        "start": lambda: tiny_rbm_pipeline()(start=torch.zeros(2, 1, 4, 4, device="meta"), num_inference_steps=2),
        "latents": lambda: tiny_vae_pipeline().decode(torch.zeros(2, 2, device="meta")),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=rf"`{name}` is a meta tensor \(a shape without values\)"):
            call()


def test_rbm_refuses_an_empty_start():
    with pytest.raises(ValueError, match=r"`start` must be a non-empty tensor of shape \(N, 1, 4, 4\).*\(0, 1, 4, 4\)"):
        tiny_rbm_pipeline()(start=torch.zeros(0, 1, 4, 4), num_inference_steps=2)


@pytest.mark.parametrize(("rtol", "atol"), [(math.nan, 1e-5), (1e-5, math.inf), ("a", 1e-5), (True, 1e-5)])
def test_tolerances_are_checked_where_the_solver_is_chosen(rtol, atol):
    message = "`rtol` and `atol` must be finite numbers > 0"
    with pytest.raises(ValueError, match=message):
        tiny_score_sde_pipeline()(
            num_samples=3, num_inference_steps=2, sampler="probability_flow", rtol=rtol, atol=atol
        )
    with pytest.raises(ValueError, match=message):
        tiny_flow_matching_pipeline()(num_samples=3, ode_solver="dopri5", rtol=rtol, atol=atol)
    with pytest.raises(ValueError, match=message):
        fm_pipeline().log_prob(images(2), rtol=rtol, atol=atol)


def test_score_times_are_checked_before_the_network_runs():
    pipe, x = tiny_score_sde_pipeline(), torch.zeros(3, 2)
    with pytest.raises(TypeError, match=r"`t` must be a float or a tensor of times in \(0, 1\], got str"):
        pipe.score(x, "a")
    for t in (0.0, math.nan, 1.5):
        with pytest.raises(ValueError, match=r"`t` must lie in \(0, 1\], the times the score model is trained on"):
            pipe.score(x, t)
    assert pipe.score(x, torch.full((3,), 0.5)).shape == (3, 2)


def test_image_log_prob_names_its_own_argument():
    with pytest.raises(ValueError, match="^`images` must be finite"):
        fm_pipeline().log_prob(torch.full((2, 1, SIZE, SIZE), math.nan))
    with pytest.raises(ValueError, match=r"^`images` must lie in \[0, 1\]"):
        fm_pipeline().log_prob(images(2) * 255)


def test_the_ode_solver_name_is_checked_against_torchdiffeq_at_the_entry_point():
    from torchdiffeq._impl.odeint import SOLVERS

    x = torch.zeros(3, 2)
    calls = [
        lambda: tiny_flow_matching_pipeline().log_prob(x, ode_solver="foo"),
        lambda: tiny_flow_matching_pipeline()(num_samples=3, ode_solver="foo"),
        lambda: tiny_ddpm_pipeline().log_prob(x, ode_solver="foo"),
        lambda: fm_pipeline().log_prob(images(2), ode_solver="foo"),
    ]
    listed = str(tuple(SOLVERS)).replace("(", r"\(").replace(")", r"\)")
    for call in calls:
        with pytest.raises(ValueError, match=rf"^`ode_solver` must be a torchdiffeq method among {listed}, got 'foo'$"):
            call()
    with pytest.raises(ValueError, match="`ode_solver` must be a torchdiffeq method among .*'dopri5'.*, got 'euler'"):
        tiny_score_sde_pipeline().log_prob(x, ode_solver="euler")  # the likelihood needs an adaptive solver


def test_batch_sizes_past_the_number_of_inputs_are_capped():
    x = torch.zeros(3, 2)
    flow = tiny_flow_matching_pipeline()
    torch.testing.assert_close(flow.log_prob(x, batch_size=10**30), flow.log_prob(x), rtol=0, atol=0)
    vae = tiny_vae_pipeline()
    assert vae.encode(torch.zeros(2, 1, 8, 8), batch_size=10**30).shape == (2, 2)
    with pytest.raises(ValueError, match="`grid_limit` must be a finite number > 0, got True"):
        vae.log_prob(torch.zeros(2, 1, 8, 8), grid_size=4, grid_limit=True)
