"""Train a Bernoulli–Bernoulli RBM on binarised MNIST-family images by CD-k or persistent CD and save it as a
diffusers pipeline (model card with the AIS test log-likelihood, samples and filters).

accelerate launch training/train_rbm.py --dataset_name ylecun/mnist --output_dir out/rbm-mnist   # PCD-1, 500 hidden
python training/train_rbm.py --train_data_files mnist/train.parquet --test_data_files mnist/test.parquet
python training/train_rbm.py --dataset_name ylecun/mnist --method cd --gibbs_steps 3 --output_dir out/rbm-cd3
accelerate launch training/train_rbm.py ... --resume_from_checkpoint latest   # continues exactly (chains included)
"""

from hfgen.arguments.rbm import RBMArguments
from hfgen.cli.scripts import run_script


def train(args: RBMArguments) -> dict:
    from hfgen.training import RBMTask, run  # torch and the task: imported once the arguments are parsed

    return run(RBMTask(args))


if __name__ == "__main__":
    raise SystemExit(run_script(RBMArguments, train, __doc__))
