"""``diffcxr app``: the web page (Gradio) for report-to-CXR generation with the findings the model read.

    diffcxr app                              # the pipeline `diffcxr demo` wrote (runs/demo/model/pipeline)
    diffcxr app --model runs/cpu-mini/pipeline --port 7860
    diffcxr app --model DIR --host 0.0.0.0   # reachable from other machines: only on a network you trust

Needs the optional extra: ``pip install 'diffcxr[app]'``.
"""

from __future__ import annotations

import argparse

from diffcxr.cli.arguments import count_at_most

HELP = "serve a web page: type a report, see the findings the model reads, generate and download images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="folder of a saved DiffCXRPipeline (default: the one `diffcxr demo` wrote, "
                                        "runs/demo/model/pipeline)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=count_at_most(65535, "a TCP port"), default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link (off by default)")
    parser.add_argument("--device", default="cpu", help="torch device for generation (default cpu)")


def run(args: argparse.Namespace) -> int:
    import importlib.util
    import os
    from pathlib import Path

    from diffcxr.errors import DiffCXRError

    if importlib.util.find_spec("gradio") is None:
        raise DiffCXRError("the web app needs Gradio: pip install 'diffcxr[app]'")
    model = Path(args.model) if args.model else None
    if model is None:
        from diffcxr.app import DEFAULT_MODEL_DIR

        if not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
            raise DiffCXRError(f"no model: pass --model DIR (a saved pipeline), or run `diffcxr demo` first "
                               f"(it writes {DEFAULT_MODEL_DIR})")
        model = DEFAULT_MODEL_DIR
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry calls
    from diffcxr.app import launch

    print(f"diffcxr app: loading {model}", flush=True)
    launch(model, host=args.host, port=args.port, share=args.share, device=args.device,
           on_ready=lambda: print(f"diffcxr app: serving {model} on http://{args.host}:{args.port}/ "
                                  f"(Ctrl-C stops it)", flush=True))
    return 0
