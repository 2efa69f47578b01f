"""Demo of a saved hfgen pipeline, as a Gradio app (the entry point of a Hugging Face Space).

    python app.py --model out/fm-checkerboard                 # a folder written by save_pretrained / a training run
    python app.py --model user/fm-checkerboard --port 7861    # or a Hub repo id

Without ``--model`` the app starts with the model named by the ``HFGEN_MODEL`` environment variable (a Space
variable), or with an empty model box. The interface is :func:`hfgen.space.build_demo`.
"""

from __future__ import annotations

import argparse
import os

from hfgen.space import build_demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Sample a saved hfgen pipeline in the browser (Gradio).")
    parser.add_argument(
        "--model",
        default=os.environ.get("HFGEN_MODEL"),
        help="folder or Hub repo id of a saved hfgen pipeline (default: $HFGEN_MODEL, else none)",
    )
    parser.add_argument(
        "--host", default=None, help="address to listen on (default: $GRADIO_SERVER_NAME, else 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT, else the first free from 7860)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    build_demo(args.model).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
