"""Train a γ-step diffusion Schrödinger bridge between two toy distributions and save it as a diffusers pipeline.

accelerate launch training/train_bridge.py                          # IPF, two balls → the same shifted by (0, 3)
accelerate launch training/train_bridge.py --resume_from_checkpoint latest   # skips finished half-iterations
python training/train_bridge.py --stage diffusion --output_dir out/bridge-diffusion
python training/train_bridge.py --num_steps 40 --schedule symmetric --ipf_iterations 8
python training/train_bridge.py --config run.yaml                   # flags beside it override the file
"""

from hfgen.arguments.schrodinger_bridge import SchrodingerBridgeArguments
from hfgen.cli.scripts import run_script


def train(args: SchrodingerBridgeArguments) -> dict:
    from hfgen.training import run_bridge  # torch and the task: imported once the arguments are parsed

    return run_bridge(args)


if __name__ == "__main__":
    raise SystemExit(run_script(SchrodingerBridgeArguments, train, __doc__))
