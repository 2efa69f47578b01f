"""Train a γ-step diffusion Schrödinger bridge between two toy distributions and save it as a diffusers pipeline.

accelerate launch training/train_bridge.py                          # IPF, two balls → the same shifted by (0, 3)
accelerate launch training/train_bridge.py --resume_from_checkpoint latest   # skips finished half-iterations
python training/train_bridge.py --stage diffusion --output_dir out/bridge-diffusion
python training/train_bridge.py --num_steps 40 --schedule symmetric --ipf_iterations 8
python training/train_bridge.py --config run.yaml                   # flags beside it override the file
"""

from hfgen.training import SchrodingerBridgeArguments, run_bridge
from hfgen.training.cli import run_script

if __name__ == "__main__":
    raise SystemExit(run_script(SchrodingerBridgeArguments, run_bridge, __doc__))
