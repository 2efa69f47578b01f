"""TimeMLP: shapes, time broadcasting, embeddings, save/load round trip, errors."""

import math

import pytest
import torch

from hfgen import TimeMLP


@pytest.mark.parametrize("embedding", ["sinusoidal", "fourier"])
@pytest.mark.parametrize("frequencies", [0, 3])
def test_forward_shapes_and_scalar_time_broadcast(embedding, frequencies):
    model = TimeMLP(dim=3, hidden_size=16, num_layers=2, time_embedding=embedding, num_position_frequencies=frequencies)
    x = torch.randn(5, 3)
    out = model(x, 0.25)
    assert out.sample.shape == (5, 3)
    torch.testing.assert_close(out.sample, model(x, torch.full((5,), 0.25)).sample)
    torch.testing.assert_close(model(x, torch.tensor(0.25), return_dict=False)[0], out.sample)
    per_point = model(x, torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4])).sample
    torch.testing.assert_close(per_point[2:3], model(x[2:3], 0.2).sample)


def test_sinusoidal_embedding_is_the_transformer_formula():
    model = TimeMLP(hidden_size=8, num_layers=1, time_embedding_dim=8, time_scale=1000.0)
    t = torch.tensor([0.0, 0.37, 1.0])
    k = torch.arange(4)
    angles = 1000 * t[:, None] * torch.exp(-math.log(10000) * k / 4)[None]
    torch.testing.assert_close(model.embed_time(t), torch.cat([angles.cos(), angles.sin()], 1))


def test_position_encoding_octaves():
    model = TimeMLP(hidden_size=8, num_layers=1, num_position_frequencies=2)
    x = torch.tensor([[0.25, -0.5]])
    # γ(x) = [x, sin(2^k π x_i), cos(2^k π x_i)], sines and cosines ordered by (coordinate i, octave k).
    got = model.encode_position(x)
    assert got.shape == (1, 2 * (1 + 2 * 2))
    sines = torch.sin(torch.pi * torch.tensor([[0.25, 0.5, -0.5, -1.0]]))
    cosines = torch.cos(torch.pi * torch.tensor([[0.25, 0.5, -0.5, -1.0]]))
    torch.testing.assert_close(got, torch.cat([x, sines, cosines], 1))


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    model = TimeMLP(dim=2, hidden_size=16, num_layers=3, activation="gelu", time_embedding="fourier")
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = TimeMLP.from_pretrained(tmp_path)
    assert loaded.config.activation == "gelu" and loaded.config.time_embedding == "fourier"
    x, t = torch.randn(4, 2), torch.rand(4)
    torch.testing.assert_close(loaded(x, t).sample, model(x, t).sample, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dim": 0}, "dim"),
        ({"hidden_size": 2.5}, "hidden_size"),
        ({"activation": "swishy"}, "activation"),
        ({"time_embedding": "learned"}, "time_embedding"),
        ({"time_embedding_dim": 7}, "even"),
        ({"num_position_frequencies": -1}, "num_position_frequencies"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TimeMLP(**kwargs)


def test_bad_inputs():
    model = TimeMLP(dim=2, hidden_size=8, num_layers=1)
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        model(torch.zeros(3, 4), 0.5)
    with pytest.raises(ValueError, match="timestep"):
        model(torch.zeros(3, 2), torch.zeros(2))
