"""The names of the choice-valued options that several families share, without torch.

The training arguments (:mod:`hfgen.arguments`) check their choice-valued flags against these tuples and
list them in ``--help``; importing nothing heavier than this module, a script shows its help and refuses a bad
argument before torch is imported. Each tuple mirrors the component that owns the option (a model, scheduler,
method or data module, whose own checks stay the rule where it is used); ``tests/test_choices.py`` checks that every
mirror equals its owner's names, as :data:`OWNERS` names them. An option of one family only is mirrored in that
family's arguments module (:mod:`hfgen.arguments`), beside its own ``OWNERS``, which the same test reads.
"""

from __future__ import annotations

#: toy distributions of :mod:`hfgen.data` (``TOY_DISTRIBUTIONS``)
TOY_DISTRIBUTION_NAMES = ("gaussian", "checkerboard", "8gaussians", "moons", "two_balls", "shifted")
#: hidden-layer activations of ``TimeMLP`` (``hfgen.models.mlp.ACTIVATIONS``)
ACTIVATION_NAMES = ("silu", "relu", "gelu", "elu", "tanh", "softplus")
#: embeddings of ``TimeMLP``'s time input
TIME_EMBEDDINGS = ("sinusoidal", "fourier")

#: flow matching: probability paths (``hfgen.methods.flow_matching.PATHS``), minibatch couplings, fixed-step solvers
PATH_NAMES = ("linear", "vp", "cosine", "brownian")
FLOW_COUPLINGS = ("independent", "ot", "sinkhorn")
FLOW_MATCH_SOLVERS = ("euler", "heun", "midpoint")

#: constant-α DDPM: reverse-step variances and samplers
VARIANCE_TYPES = ("beta", "beta_tilde")
DDPM_SAMPLERS = ("ancestral", "ddim")

#: score SDEs: what the network predicts, and the samplers of the pipeline
PREDICTION_TYPES = ("epsilon", "score")
SCORE_SDE_SAMPLERS = ("euler_maruyama", "predictor_corrector", "probability_flow")

#: the Schrödinger bridge's γ schedules
BRIDGE_SCHEDULES = ("constant", "symmetric")

#: density models: mixture covariances, KDE bandwidth rules, MADE orders, coupling layers and linear maps
COVARIANCE_TYPES = ("spherical", "diag", "full")
BANDWIDTH_RULES = ("scott", "silverman")
MADE_ORDERS = ("natural", "random")
COUPLING_LAYERS = ("affine", "spline")
LINEAR_PARAMETRIZATIONS = ("dense", "lu")
#: CNF ODE solvers of torchdiffeq: fixed-step and adaptive
FIXED_STEP_SOLVERS = ("euler", "midpoint", "rk4")
ADAPTIVE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")

#: autoencoders and VAEs: decoder likelihoods, architectures, hidden-layer normalisations
LIKELIHOODS = ("bernoulli", "gaussian")
ARCHITECTURES = ("mlp", "conv")
NORMALIZATIONS = ("none", "layer")

#: the seed of the one draw of a test set under dynamic binarisation (MADE and the RBM score the same images,
#: whatever the training seed)
TEST_BINARIZATION_SEED = 0

#: the owner of each mirror, ``"module:attribute"``: the tuple of its names, or the mapping whose keys they are
OWNERS: dict[str, str] = {
    "TOY_DISTRIBUTION_NAMES": "hfgen.data:TOY_DISTRIBUTIONS",
    "ACTIVATION_NAMES": "hfgen.models.mlp:ACTIVATIONS",
    "TIME_EMBEDDINGS": "hfgen.models.mlp:TIME_EMBEDDINGS",
    "PATH_NAMES": "hfgen.methods.flow_matching:PATHS",
    "FLOW_COUPLINGS": "hfgen.methods.couplings:COUPLINGS",
    "FLOW_MATCH_SOLVERS": "hfgen.schedulers.flow_match_solvers:FLOW_MATCH_SCHEDULERS",
    "VARIANCE_TYPES": "hfgen.schedulers.constant_alpha_ddpm:VARIANCE_TYPES",
    "DDPM_SAMPLERS": "hfgen.schedulers.constant_alpha_ddpm:SAMPLERS",
    "PREDICTION_TYPES": "hfgen.schedulers.score_sde:PREDICTION_TYPES",
    "SCORE_SDE_SAMPLERS": "hfgen.pipelines.score_sde:SAMPLERS",
    "BRIDGE_SCHEDULES": "hfgen.schedulers.schrodinger_bridge:SCHEDULES",
    "COVARIANCE_TYPES": "hfgen.models.mixture:COVARIANCE_TYPES",
    "BANDWIDTH_RULES": "hfgen.models.kde:BANDWIDTH_RULES",
    "MADE_ORDERS": "hfgen.models.made:ORDERS",
    "COUPLING_LAYERS": "hfgen.models.coupling_flow:COUPLINGS",
    "LINEAR_PARAMETRIZATIONS": "hfgen.models.coupling_flow:LINEAR_PARAMETRIZATIONS",
    "FIXED_STEP_SOLVERS": "hfgen.methods.cnf:FIXED_STEP_SOLVERS",
    "ADAPTIVE_SOLVERS": "hfgen.methods.cnf:ADAPTIVE_SOLVERS",
    "LIKELIHOODS": "hfgen.models.vae_parts:LIKELIHOODS",
    "ARCHITECTURES": "hfgen.models.vae_parts:ARCHITECTURES",
    "NORMALIZATIONS": "hfgen.models.vae_parts:NORMALIZATIONS",
}
