"""Train a flow-matching model between two toy distributions and save it as a diffusers pipeline.

accelerate launch training/train_fm.py                                # built-in recipe: N(0, I) → checkerboard
accelerate launch training/train_fm.py --resume_from_checkpoint latest
python training/train_fm.py --dataset 8gaussians --coupling ot --output_dir out/fm-8g
python training/train_fm.py --config training/configs/fm_checkerboard.yaml   # flags beside it override the file
accelerate launch --multi_gpu --num_processes 2 training/train_fm.py  # data parallel (OT within each process)
"""

from hfgen.training import FlowMatchingArguments, FlowMatchingTask, run
from hfgen.training.cli import run_script


def train(args: FlowMatchingArguments) -> dict:
    num_samples, num_nll_points, _ = args.evaluation_sizes()
    return run(FlowMatchingTask(args), num_samples, num_nll_points)


if __name__ == "__main__":
    raise SystemExit(run_script(FlowMatchingArguments, train, __doc__))
