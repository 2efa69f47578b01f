"""The demo Space: the callbacks of ``hfgen.space`` on tiny saved pipelines of every kind, the Gradio interface, and
the app in a real headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright)."""

from __future__ import annotations

import importlib.util
import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urljoin

import numpy as np
import pytest
import torch
from conformance import tiny_pipelines
from PIL import Image

from hfgen import GibbsScheduler, HfgenPipeline, space

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
TINY_PIPELINES = tiny_pipelines()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(what: str, present: bool, how: str) -> None:
    """Skip when ``what`` is missing on a workstation; fail in CI, which installs it (``.ci/run``)."""
    if present:
        return
    message = f"{what} is missing ({how})"
    if in_ci():
        pytest.fail(f"{message}; CI=true, so the test fails instead of skipping")
    pytest.skip(message)


def test_require_skips_on_a_workstation_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is missing"):
        require("chromium", False, "apt-get install chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true, so the test fails instead of skipping"):
        require("chromium", False, "apt-get install chromium")
    require("chromium", True, "apt-get install chromium")


@pytest.fixture(autouse=True)
def fresh_cache():
    space.clear_cache()
    yield
    space.clear_cache()


@pytest.fixture
def saved(tmp_path):
    """``saved(kind)``: the folder of a tiny pipeline of that kind, written by ``save_pretrained``."""

    def save(kind: str) -> str:
        folder = tmp_path / kind
        TINY_PIPELINES[kind]().save_pretrained(folder)
        return str(folder)

    return save


def not_blank(image: Image.Image) -> float:
    """Fraction of pixels that differ from the most common colour (the background)."""
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    _, counts = np.unique(pixels, axis=0, return_counts=True)
    return 1.0 - counts.max() / pixels.shape[0]


# ------------------------------------------------------------------------------------------------ what is offered


def test_describe_finds_each_pipelines_controls(saved):
    infos = {kind: space.describe(space.load_pipeline(saved(kind)), kind) for kind in TINY_PIPELINES}
    fm = infos["flow_matching"]
    assert fm.can_sample and fm.steps == 100 and fm.has_velocity and fm.has_density and not fm.has_latent
    assert fm.has_trajectory and not infos["vae"].has_trajectory and not infos["rbm"].has_trajectory
    assert fm.solvers == ("scheduler", "euler", "heun", "midpoint", "dopri5") and fm.default_solver == "scheduler"
    ddpm = infos["ddpm"]
    assert ddpm.steps == 10 and ddpm.max_steps == 10  # all T steps by default, at most T
    assert ddpm.solvers == ("ancestral", "ddim") and ddpm.has_density and not ddpm.has_velocity
    bridge = infos["bridge"]
    assert bridge.directions == ("forward", "backward") and bridge.steps is None and not bridge.solvers
    assert infos["score_sde"].solvers == ("euler_maruyama", "predictor_corrector", "probability_flow")
    assert infos["energy"].steps == 100 and infos["energy"].has_density
    vae = infos["vae"]
    assert vae.can_sample and vae.has_latent and not vae.has_density and vae.steps is None
    assert infos["rbm"].steps == 1000 and not infos["rbm"].has_latent
    autoencoder = infos["autoencoder"]
    assert not autoencoder.can_sample and autoencoder.has_latent and "draws no samples" in autoencoder.summary
    assert infos["vae"].summary.startswith("**VAEPipeline** (vae VAE) on images")


def test_load_pipeline_caches_and_reports_a_bad_folder(saved, tmp_path):
    folder = saved("flow_matching")
    assert space.load_pipeline(folder) is space.load_pipeline(folder)
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        space.load_pipeline(str(tmp_path))
    with pytest.raises(ValueError, match="folder or a Hub repo id"):
        space.load_pipeline("  ")


def test_a_missing_folder_and_a_folder_without_a_pipeline_get_one_message(tmp_path):
    """The page must not tell which folders exist on the server."""
    (tmp_path / "exists").mkdir()
    messages = []
    for name in ("missing", "exists"):
        with pytest.raises(FileNotFoundError) as error:
            space.load_pipeline(str(tmp_path / name))
        messages.append(str(error.value).replace(str(tmp_path / name), "NAME"))
    assert messages[0] == messages[1] == space.NOT_A_PIPELINE.format(name="NAME")


def test_a_folder_saved_again_with_another_model_is_loaded_again(tmp_path):
    folder = str(tmp_path / "model")
    TINY_PIPELINES["flow_matching"]().save_pretrained(folder)
    first = space.load_pipeline(folder)
    assert space.load_pipeline(folder) is first  # unchanged: served from the cache
    other = TINY_PIPELINES["flow_matching"](seed=1)
    other.save_pretrained(folder)
    again = space.load_pipeline(folder)
    assert again is not first
    expected = other.velocity.state_dict()
    assert all(torch.equal(again.velocity.state_dict()[key], value) for key, value in expected.items())


def test_a_failed_load_keeps_the_model_that_was_loaded(saved, tmp_path):
    folder = saved("flow_matching")
    info, text = space.load_model(folder)
    assert info.name == folder and text.startswith(f"Loaded `{folder}`")
    info, text = space.load_model(str(tmp_path / "no-such-model"), current=folder)
    assert info is not None and info.name == folder and info.class_name == "FlowMatchingPipeline"
    assert text.startswith("**Could not load") and "no-such-model" in text and f"Still loaded: `{folder}`" in text
    info, text = space.load_model(str(tmp_path / "no-such-model"))  # nothing loaded before: nothing kept
    assert info is None and text.startswith("**Could not load")


# ------------------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(
    ("kind", "steps", "solver", "direction", "animate"),
    [
        ("flow_matching", 8, "scheduler", None, True),
        ("flow_matching", 8, "heun", None, False),
        ("flow_matching", 8, "dopri5", None, False),
        ("ddpm", 5, "ddim", None, True),
        ("score_sde", 6, "probability_flow", None, True),
        ("energy", 6, None, None, True),
        ("bridge", None, None, "backward", True),
    ],
)
def test_sample_points_plots_samples_and_an_animated_trajectory(
    saved, tmp_path, kind, steps, solver, direction, animate
):
    pipe = space.load_pipeline(saved(kind))
    gif = tmp_path / "trajectory.gif" if animate else None
    result = space.sample(
        pipe, num_samples=48, num_inference_steps=steps, solver=solver, seed=3, direction=direction, gif_path=gif
    )
    assert result.samples.size[0] > 100 and not_blank(result.samples) > 0.005
    assert result.trajectory == (str(gif) if animate else None)
    if animate:
        with Image.open(gif) as animation:
            assert animation.format == "GIF" and animation.n_frames > 2
    assert result.message.startswith("48 samples in ")
    assert (result.velocity is not None) == (kind == "flow_matching")
    if result.velocity is not None:  # five panels side by side
        assert result.velocity.size[0] > 4 * result.velocity.size[1]


def test_same_seed_same_picture_other_seed_other_picture(saved):
    pipe = space.load_pipeline(saved("ddpm"))
    first, again, other = (space.sample(pipe, num_samples=32, seed=s).samples for s in (1, 1, 2))
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_fixed_step_solvers_take_the_schedulers_steps(saved):
    """ "euler" runs as torchdiffeq's fixed-grid Euler on t_i = i/n: the same points as the saved Euler scheduler."""
    pipe = space.load_pipeline(saved("flow_matching"))
    info = space.describe(pipe)
    outputs = {}
    for solver in ("scheduler", "euler"):
        call, kwargs = space.sampling._for_call(pipe, info, solver)
        generator = torch.Generator().manual_seed(0)
        outputs[solver] = call(
            num_samples=16, num_inference_steps=7, generator=generator, return_trajectory=True, **kwargs
        )
    assert outputs["euler"].nfe == outputs["scheduler"].nfe == 7
    torch.testing.assert_close(outputs["euler"].samples, outputs["scheduler"].samples, atol=1e-5, rtol=1e-5)


def test_the_ddpm_sampler_chosen_in_the_page_is_the_one_that_runs(saved, tmp_path):
    """The "Sample" button with solver "ddim" on a pipeline saved with the ancestral sampler draws what the same
    pipeline saved with DDIM draws, and not the ancestral draw."""
    ddim = tmp_path / "ddim"
    TINY_PIPELINES["ddpm"](sampler="ddim").save_pretrained(ddim)

    def picture(folder: str, solver: str) -> np.ndarray:
        image, _, _, message = space.sample_controls(folder, 10, solver, 1, 64, "forward", tmp_path)
        assert message.startswith("64 samples"), message
        return np.asarray(image)

    chosen = picture(saved("ddpm"), "ddim")
    assert np.array_equal(chosen, picture(str(ddim), "ddim"))
    assert not np.array_equal(chosen, picture(saved("ddpm"), "ancestral"))


def test_a_solver_choice_leaves_the_cached_pipeline_as_saved(saved):
    pipe = space.load_pipeline(saved("ddpm"))
    scheduler = pipe.scheduler
    space.sample(pipe, num_samples=8, num_inference_steps=4, solver="ddim", seed=0)
    assert pipe.scheduler is scheduler and pipe.scheduler.config.sampler == "ancestral"
    assert pipe.config["scheduler"] == space.load_pipeline(saved("ddpm")).config["scheduler"]


def test_bridge_plots_the_transported_points_over_the_marginal_they_should_reach(saved):
    pipe = space.load_pipeline(saved("bridge"))
    forward = space.sample(pipe, num_samples=40, seed=0, direction="forward")
    backward = space.sample(pipe, num_samples=40, seed=0, direction="backward")
    assert forward.message.startswith("40 samples") and backward.message.startswith("40 samples")
    assert not np.array_equal(np.asarray(forward.samples), np.asarray(backward.samples))
    assert forward.velocity is None and forward.trajectory is None  # no gif_path given


@pytest.mark.parametrize("kind", ["vae", "rbm"])
def test_sample_images_shows_a_grid(saved, kind):
    pipe = space.load_pipeline(saved(kind))
    steps = 3 if kind == "rbm" else None
    result = space.sample(pipe, num_samples=70, num_inference_steps=steps, seed=0, gif_path=None)
    assert result.samples.size[0] > 100 and not_blank(result.samples) > 0.05
    assert result.trajectory is None and result.velocity is None
    assert result.message.startswith("70 images in ")


class GreyImagesPipeline(HfgenPipeline):
    """A stand-in for an image pipeline the app does not know: its output has ``images``, a list of PIL images."""

    image_shape = (1, 6, 6)

    def __init__(self, scheduler: GibbsScheduler):
        super().__init__()
        self.register_modules(scheduler=scheduler)

    def __call__(self, num_samples: int = 4, num_inference_steps: int = 20, generator=None, return_dict=True):
        levels = torch.rand(num_samples, 6, 6, generator=generator)
        images = [Image.fromarray((255 * level).round().byte().numpy(), "L") for level in levels]
        return SimpleNamespace(images=images, nfe=num_inference_steps)


def test_an_unknown_pipeline_with_images_gets_a_grid():
    pipe = GreyImagesPipeline(GibbsScheduler())
    info = space.describe(pipe, "grey")
    assert info.can_sample and info.steps == 20 and not info.solvers and not info.has_trajectory
    assert info.summary.endswith("on images.")
    result = space.sample(pipe, num_samples=9, num_inference_steps=3, seed=0)
    assert result.message.startswith("9 images in ") and "3 network evaluations" in result.message
    assert not_blank(result.samples) > 0.05 and result.trajectory is None


@pytest.mark.parametrize(
    ("kind", "arguments", "error", "match"),
    [
        ("flow_matching", {"solver": "rk45"}, ValueError, r"solver must be one of \('scheduler', 'euler'"),
        ("flow_matching", {"num_samples": 0}, ValueError, r"num_samples must be an integer in \[1, 5000\], got 0"),
        ("flow_matching", {"seed": -1}, ValueError, r"seed must be an integer in \[0, 18446744073709551615\], got -1"),
        (
            "flow_matching",
            {"seed": 1e30},
            ValueError,
            r"seed must be an integer in \[0, 18446744073709551615\], got 1e\+30",
        ),
        ("flow_matching", {"direction": "up"}, ValueError, r"direction must be one of none \(not a bridge\)"),
        ("ddpm", {"num_inference_steps": 11}, ValueError, r"num_inference_steps must be an integer in \[1, 10\]"),
        ("bridge", {"num_inference_steps": 3}, ValueError, "takes no choice of num_inference_steps"),
        ("vae", {"solver": "euler"}, ValueError, r"none \(this pipeline has no solver choice\)"),
        ("autoencoder", {}, ValueError, "AutoEncoderPipeline draws no samples"),
    ],
)
def test_sample_refuses_bad_arguments_by_name(saved, kind, arguments, error, match):
    with pytest.raises(error, match=match):
        space.sample(space.load_pipeline(saved(kind)), **arguments)


# ----------------------------------------------------------------------------------------- density and latent space


@pytest.mark.parametrize("kind", ["flow_matching", "ddpm"])
def test_density_heat_map(saved, kind):
    image = space.density_image(space.load_pipeline(saved(kind)), grid_size=6, half_width=2.0)
    assert image.size[0] > 100 and not_blank(image) > 0.05


def test_density_refuses_a_model_without_a_2d_density(saved):
    with pytest.raises(ValueError, match="VAEPipeline has no log_prob over 2-D points"):
        space.density_image(space.load_pipeline(saved("vae")))
    with pytest.raises(ValueError, match="grid_size must be an integer in"):
        space.density_image(space.load_pipeline(saved("flow_matching")), grid_size=1)
    for half_width in (1e308, float("inf"), 0.0):
        with pytest.raises(
            ValueError, match=re.escape(f"half_width must be a number in (0, 1e+06], got {half_width!r}")
        ):
            space.density_image(space.load_pipeline(saved("flow_matching")), half_width=half_width)


@pytest.mark.parametrize("kind", ["vae", "autoencoder"])
def test_decode_latent_shows_the_decoded_image_at_z(saved, kind):
    pipe = space.load_pipeline(saved(kind))
    picture = space.decode_latent(pipe, 0.5, -1.25)
    assert picture.size == (space.DIGIT_SIZE, space.DIGIT_SIZE) and picture.mode == "L"
    expected = pipe.decode(torch.tensor([[0.5, -1.25]]))[0, 0]  # (8, 8) in [0, 1]
    scale = space.DIGIT_SIZE // expected.shape[0]
    shown = np.asarray(picture)[scale // 2 :: scale, scale // 2 :: scale] / 255.0
    np.testing.assert_allclose(shown, expected.numpy(), atol=1 / 255)
    assert space.latent_map(pipe, n=4).size[0] > 100


def test_latent_callbacks_refuse_a_model_without_a_2d_latent(saved):
    pipe = space.load_pipeline(saved("flow_matching"))
    with pytest.raises(ValueError, match="FlowMatchingPipeline has no decode of a 2-D latent space"):
        space.decode_latent(pipe, 0.0, 0.0)
    with pytest.raises(ValueError, match="z2 must be a finite number, got nan"):
        space.decode_latent(space.load_pipeline(saved("vae")), 0.0, float("nan"))


# ------------------------------------------------------------------------------------------------- the interface


def test_build_demo_lays_out_the_controls_for_the_loaded_model(saved):
    require("gradio", importlib.util.find_spec("gradio") is not None, "pip install gradio")
    import gradio as gr

    demo = space.build_demo(saved("flow_matching"))
    assert isinstance(demo, gr.Blocks)
    blocks = list(demo.blocks.values())
    buttons = {block.value for block in blocks if isinstance(block, gr.Button)}
    assert {"Load", "Sample", "Density"} <= buttons
    summary = next(block for block in blocks if getattr(block, "elem_id", None) == "model")
    assert summary.value.startswith("Loaded `") and "FlowMatchingPipeline" in summary.value
    solver = next(block for block in blocks if isinstance(block, gr.Dropdown))
    assert solver.visible and solver.value == "scheduler"


def test_build_demo_shows_a_bad_folder_as_text(tmp_path):
    require("gradio", importlib.util.find_spec("gradio") is not None, "pip install gradio")
    demo = space.build_demo(str(tmp_path / "missing"))
    summary = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "model")
    assert summary.value.startswith("**Could not load") and "FileNotFoundError" in summary.value
    assert "Traceback" not in summary.value and "missing" in summary.value


# ------------------------------------------------------------------------------------------ a real browser session


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"app.py did not answer on {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_the_app_in_headless_chromium_samples_and_shows_the_image(saved, tmp_path):
    require(str(CHROMIUM), CHROMIUM.exists(), "apt-get install chromium")
    for module in ("gradio", "playwright"):
        require(f"the {module} package", importlib.util.find_spec(module) is not None, f"pip install {module}")
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    command = [sys.executable, str(ROOT / "app.py"), "--model", saved("flow_matching"), "--host", "127.0.0.1"]
    with open(log, "w") as output:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_for_server(url, process, log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1300})
                page.goto(url)
                page.get_by_role("button", name="Sample", exact=True).click()
                page.wait_for_function(
                    "() => { const img = document.querySelector('#samples img');"
                    " return img !== null && img.complete && img.naturalWidth > 0; }",
                    timeout=120_000,
                )
                source = page.locator("#samples img").get_attribute("src")
                body = page.request.get(urljoin(url, source)).body()
                status = page.locator("#status").inner_text()
                page.wait_for_function(
                    "() => { const img = document.querySelector('#trajectory img');"
                    " return img !== null && img.complete && img.naturalWidth > 0; }",
                    timeout=60_000,
                )
                page.screenshot(path=tmp_path / "space.png", full_page=True)
                page.get_by_label("Model: folder or Hub repo id").fill(str(tmp_path / "no-such-model"))
                page.get_by_role("button", name="Load", exact=True).click()
                page.get_by_text("Could not load").wait_for(timeout=60_000)
                error_text = page.locator("#model").inner_text()
            finally:
                browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    image = Image.open(io.BytesIO(body))
    assert image.size[0] >= 200 and image.size[1] >= 200
    assert not_blank(image) > 0.005, "the samples image is blank"
    assert "1000 samples in" in status
    assert "no-such-model" in error_text and "Traceback" not in error_text
    assert (tmp_path / "space.png").stat().st_size > 10_000
