"""Train the small MNIST-family CNN classifier used to score generated images, and save it with safetensors.

python training/train_classifier.py --dataset_name ylecun/mnist --output_dir out/mnist-classifier
python training/train_classifier.py --train_data_files mnist/train.parquet --test_data_files mnist/test.parquet
accelerate launch --multi_gpu --num_processes 2 training/train_classifier.py --dataset_name ylecun/mnist
"""

import json

from hfgen.training import parse_arguments
from hfgen.training.classifier import ClassifierArguments, train_classifier


def main() -> None:
    args = parse_arguments(ClassifierArguments)
    _, metrics = train_classifier(args)
    if metrics:
        print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
