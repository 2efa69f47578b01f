"""Train the small MNIST-family CNN classifier used to score generated images, and save it with safetensors.

python training/train_classifier.py --train_data_files ../shared/data/mnist/train.parquet \
    --test_data_files ../shared/data/mnist/test.parquet --output_dir out/mnist-classifier
accelerate launch training/train_classifier.py --dataset_name ylecun/mnist
"""

import json

from transformers import HfArgumentParser

from hfgen.classifier_training import ClassifierTrainingArguments, train_classifier


def main() -> None:
    (args,) = HfArgumentParser(ClassifierTrainingArguments).parse_args_into_dataclasses()
    _, metrics = train_classifier(args)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
