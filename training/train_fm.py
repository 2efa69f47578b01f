r"""Train a flow-matching model between two toy distributions, or on images, and save it as a diffusers pipeline.

accelerate launch training/train_fm.py                                # built-in recipe: N(0, I) → checkerboard
accelerate launch training/train_fm.py --resume_from_checkpoint latest
python training/train_fm.py --dataset 8gaussians --coupling ot --output_dir out/fm-8g
python training/train_fm.py --config training/configs/fm_checkerboard.yaml   # flags beside it override the file
accelerate launch --multi_gpu --num_processes 2 training/train_fm.py  # data parallel (OT within each process)

Images (a diffusers UNet2DModel; --dataset_name or --train_data_files selects them):
python training/train_fm.py --dataset_name ylecun/mnist --output_dir out/fm-mnist
python training/train_fm.py --dataset_name ylecun/mnist --class_conditional --cond_drop_prob 0.1 --guidance_scale 2
python training/train_fm.py --train_data_files mnist/train.parquet --test_data_files mnist/test.parquet \
    --classifier_path out/mnist-classifier                           # classifier scores in metrics.json
"""

from hfgen.arguments.flow_matching import FlowMatchingArguments
from hfgen.arguments.images import FlowMatchingImageArguments
from hfgen.cli.scripts import run_points_or_images


def train(args: FlowMatchingArguments) -> dict:
    from hfgen.training import FlowMatchingTask, run  # torch and the task: imported once the arguments are parsed

    return run(FlowMatchingTask(args))


def train_images(args: FlowMatchingImageArguments) -> dict:
    from hfgen.training import FlowMatchingImageTask, run  # torch and the task: imported once the arguments are parsed

    return run(FlowMatchingImageTask(args))


if __name__ == "__main__":
    raise SystemExit(
        run_points_or_images((FlowMatchingArguments, train), (FlowMatchingImageArguments, train_images), __doc__)
    )
