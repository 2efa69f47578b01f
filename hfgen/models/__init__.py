"""Networks: diffusers ``ModelMixin`` + ``ConfigMixin`` classes, one module per family."""

from hfgen.models.ddpm_oracle import DDPMOracle, DDPMOracleOutput
from hfgen.models.mlp import TimeMLP, TimeMLPOutput

__all__ = ["DDPMOracle", "DDPMOracleOutput", "TimeMLP", "TimeMLPOutput"]
