"""benchmarks/bench_density.py: the statistics of the coupling-against-peers section, and peer flows whose samples
come from the map their log-density inverts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_density  # noqa: E402 (benchmarks/ is not a package: its folder goes on the path first)


def run(gap: float, stderr: float) -> dict:
    return {"nll_minus_entropy": gap, "nll_minus_entropy_stderr": stderr}


def test_a_second_seed_reproduces_within_two_standard_errors_of_the_difference():
    # |0.0186 − 0.0213| = 0.0027 > 2 sqrt(2) 0.0009 = 0.00255; a gap of 0.0025 is inside
    assert not bench_density.reproduces(run(0.0186, 0.0009), run(0.0213, 0.0009))
    assert bench_density.reproduces(run(0.0186, 0.0009), run(0.0211, 0.0009))


def test_the_seed_mean_takes_the_larger_of_the_within_run_and_the_seed_to_seed_error():
    mean, error = bench_density.seed_mean([run(0.01, 0.003), run(0.02, 0.004)])
    assert mean == pytest.approx(0.015, abs=1e-15)
    assert error == pytest.approx(0.005, abs=1e-15)  # sd 0.01 / √2 over √2 seeds; within-run 0.005 / 2 = 0.0025
    mean, error = bench_density.seed_mean([run(0.01, 0.03), run(0.02, 0.04)])
    assert error == pytest.approx(0.025, abs=1e-15)  # sqrt(0.03² + 0.04²) / 2
    assert bench_density.seed_mean([run(0.01, 0.003)]) == (0.01, 0.003)


def test_a_peer_is_level_within_two_standard_errors_and_otherwise_behind_or_ahead():
    assert bench_density.compare((0.02, 0.0003), (0.0208, 0.0004)) == "0.0008 ± 0.0005: level (within 2 SE)"
    assert bench_density.compare((0.02, 0.0003), (0.03, 0.0004)) == "0.0100 ± 0.0005: ahead (20.0 SE)"
    assert bench_density.compare((0.03, 0.0003), (0.02, 0.0004)) == "-0.0100 ± 0.0005: behind (20.0 SE)"


@pytest.mark.parametrize("name", bench_density.PEERS)
def test_a_peer_flows_samples_are_the_inverse_of_the_map_its_log_density_reads(name):
    pytest.importorskip(name)
    torch.manual_seed(0)
    args = bench_density.DensityArguments(model="coupling", num_couplings=2, hidden_size=8, num_layers=2, num_bins=4)
    flow, log_q, sample = bench_density.peer_flow(name, args, 2)
    with torch.no_grad():
        for parameter in flow.parameters():  # away from the identity the libraries start at
            parameter.add_(0.1 * torch.randn_like(parameter))
        z = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
        x = sample(64, torch.Generator().manual_seed(3))
        base = -0.5 * (z**2).sum(1) - torch.log(torch.tensor(2 * torch.pi))
        if name == "zuko":
            back, log_det = flow().transform.call_and_ladj(x)
        else:
            back, log_det = x, torch.zeros(64)
            for layer in reversed(flow.flows):
                back, step = layer.inverse(back)
                log_det = log_det + step
        torch.testing.assert_close(back, z, rtol=0, atol=1e-4)
        torch.testing.assert_close(log_q(x), base + log_det, rtol=0, atol=1e-4)
        assert not torch.allclose(x, z, atol=1e-2)  # the flow is not the identity


def test_each_mask_s_nll_is_its_own_chain_rule_and_the_ensemble_beats_their_mean():
    from hfgen.models.made import MADE

    torch.manual_seed(0)
    model = MADE(dim=6, hidden_sizes=[16], num_masks=4, order="random", direct_connections=True)
    for parameter in model.parameters():  # away from the zero-initialised biases: masks that disagree
        parameter.data.normal_(0, 1.0)
    images = torch.bernoulli(torch.full((2500, 6), 0.3), generator=torch.Generator().manual_seed(1))
    each = bench_density.mask_nlls(model, images)
    with torch.no_grad():
        expected = [-float(model.log_prob(images, mask_index=m).double().mean()) for m in range(4)]
        ensemble = -float(model.log_prob(images).double().mean())
    assert each == pytest.approx(expected, rel=0, abs=1e-5)
    assert len(set(each)) == 4
    # Jensen: logmeanexp_m log p_m(x) ≥ mean_m log p_m(x) image by image, so the ensemble's NLL ≤ the masks' mean
    assert ensemble < sum(each) / 4
    row = {"nll": ensemble, "mask_nll": each}
    [line, _] = bench_density._mask_lines({"made-mnist-dynamic-masks": row})
    assert f"best {min(each):.2f}, mean {sum(each) / 4:.2f}, worst {max(each):.2f}" in line
    assert f"the ensemble of 4 masks {ensemble:.2f} nats" in line
