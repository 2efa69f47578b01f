"""Train the small MNIST-family CNN classifier used to score generated images, and save it with safetensors.

python training/train_classifier.py --dataset_name ylecun/mnist --output_dir out/mnist-classifier
python training/train_classifier.py --train_data_files mnist/train.parquet --test_data_files mnist/test.parquet
accelerate launch --multi_gpu --num_processes 2 training/train_classifier.py --dataset_name ylecun/mnist
"""

from hfgen.arguments.classifier import ClassifierArguments
from hfgen.cli.scripts import run_script


def train(args: ClassifierArguments) -> dict:
    from hfgen.training import train_classifier  # torch and the task: imported once the arguments are parsed

    return train_classifier(args)[1]


if __name__ == "__main__":
    raise SystemExit(run_script(ClassifierArguments, train, __doc__))
