"""The thread policy (hfgen.threads): a small network's pipeline call runs with one intra-op thread unless the user
chose a thread count, and gives the caller's setting back; a convolutional or large network keeps the cores."""

from __future__ import annotations

import pytest
import torch
from factories import tiny_flow_matching_pipeline, tiny_unet, tiny_vae_pipeline

from hfgen import FlowMatchEulerScheduler, FlowMatchingPipeline, TimeMLP, threads
from hfgen.threads import SMALL_NETWORK_PARAMETERS, THREAD_VARIABLES


@pytest.fixture
def untouched_two_threads(monkeypatch):
    """A process where the user set no thread count: torch at its default of two threads, no variable set."""
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "_THREADS_AT_IMPORT", 2)
    yield
    torch.set_num_threads(previous)


def threads_seen(network: torch.nn.Module) -> list[int]:
    """The intra-op thread count at each forward pass of ``network``."""
    seen: list[int] = []
    network.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    return seen


def test_a_small_point_network_samples_with_one_thread_and_the_setting_comes_back(untouched_two_threads):
    pipe = tiny_flow_matching_pipeline()
    pipe.set_progress_bar_config(disable=True)
    seen = threads_seen(pipe.velocity)
    pipe(num_samples=4, num_inference_steps=3)
    pipe.velocity_field(torch.zeros(2, 2), t=0.5)
    pipe.log_prob(torch.zeros(2, 2), rtol=1e-3, atol=1e-3)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2


def test_the_setting_comes_back_when_the_call_fails(untouched_two_threads):
    pipe = tiny_flow_matching_pipeline()
    with pytest.raises(ValueError, match="num_samples"):
        pipe(num_samples=0)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("how", ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "torch.set_num_threads"])
def test_a_thread_count_the_user_chose_is_left_alone(untouched_two_threads, monkeypatch, how):
    if how == "torch.set_num_threads":
        torch.set_num_threads(3)
    else:
        monkeypatch.setenv(how, "2")
    expected = torch.get_num_threads()
    pipe = tiny_flow_matching_pipeline()
    pipe.set_progress_bar_config(disable=True)
    seen = threads_seen(pipe.velocity)
    pipe(num_samples=4, num_inference_steps=2)
    assert set(seen) == {expected}


def test_a_large_network_keeps_the_cores(untouched_two_threads):
    velocity = TimeMLP(dim=2, hidden_size=1024, num_layers=3)
    assert sum(p.numel() for p in velocity.parameters()) > SMALL_NETWORK_PARAMETERS
    pipe = FlowMatchingPipeline(velocity, FlowMatchEulerScheduler())
    pipe.set_progress_bar_config(disable=True)
    seen = threads_seen(pipe.velocity)
    pipe(num_samples=4, num_inference_steps=2)
    assert set(seen) == {2}


def test_a_convolutional_network_keeps_the_cores_and_an_mlp_vae_takes_one_thread(untouched_two_threads):
    from hfgen import FlowMatchingImagePipeline

    unet = tiny_unet(channels=(4, 8), seed=None)
    image_pipe = FlowMatchingImagePipeline(unet, FlowMatchEulerScheduler())
    image_pipe.set_progress_bar_config(disable=True)
    seen = threads_seen(image_pipe.unet)
    image_pipe(num_samples=1, num_inference_steps=1)
    assert set(seen) == {2} and not image_pipe.small_network_threads
    vae_pipe = tiny_vae_pipeline()
    seen = threads_seen(vae_pipe.vae.decoder)
    vae_pipe.decode(torch.zeros(2, 2))
    assert set(seen) == {1} and vae_pipe.small_network_threads
