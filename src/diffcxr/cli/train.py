"""``diffcxr train``: train one Diff-CXR stage, or all of them and export the pipeline."""

from __future__ import annotations

import argparse

from diffcxr.cli.arguments import CLIParser

HELP = "train a Diff-CXR stage (vae, vlm, base, adapter, classifier) or all of them, or distil a pipeline; resumable"

STAGE_CHOICES = ("vae", "vlm", "base", "adapter", "classifier", "all", "distill")


class _IntermixedParser(CLIParser):
    """Lets ``key=value`` overrides come after the options (``... --data X base.lr=1e-4``), which plain
    ``parse_known_args`` rejects once the first positional group has been consumed."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.__class__ = _IntermixedParser
    parser.add_argument("stage", choices=STAGE_CHOICES,
                        help="stage to train; 'all' runs vae, vlm, base, adapter, classifier and exports the pipeline")
    parser.add_argument("-c", "--config", required=True,
                        help="training config: tiny, demo, cpu-mini, paper (shipped in the package) or a YAML file")
    parser.add_argument("--data", help="dataset spec, e.g. phantom:DIR, mimic:ROOT, iu:..., csv:FILE (required)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (with overrides and its model config) as YAML and exit; "
                             "save it, edit it and pass the file to -c")
    parser.add_argument("--manifest", help="noise-filter manifest (diffcxr filter): train only on the kept ids")
    parser.add_argument("--teacher", metavar="PIPELINE_DIR",
                        help="distill only: the pipeline to distil (e.g. runs/cpu-mini/pipeline); the distilled "
                             "pipeline is saved to OUTPUT_DIR/pipeline")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. base.lr=1e-4 base.max_steps=2000 seed=1")
    parser.add_argument("--output-dir", help="output folder (default: the config's output_dir or runs/<name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint of each stage (completed stages are skipped)")
    parser.add_argument("--no-mixed-precision", action="store_true",
                        help="train in fp32 (default: bf16 autocast where supported, fp32 master weights)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from diffcxr.errors import DiffCXRError
    from diffcxr.training import load_run_config, train

    cfg = load_run_config(args.config, args.overrides)
    if args.print_config:
        import yaml

        from diffcxr.training.config import config_to_dict

        resolved = config_to_dict(cfg)
        resolved.pop("source", None)
        resolved["model"] = cfg.model_config()
        print(yaml.safe_dump(resolved, sort_keys=False), end="")
        return 0
    if not args.data:
        raise DiffCXRError("train needs --data (a dataset spec, e.g. phantom:DIR; make one with diffcxr phantom)")
    out = Path(args.output_dir or cfg.output_dir or Path("runs") / cfg.name)
    t0 = time.perf_counter()
    extra = {"teacher": args.teacher} if args.teacher else {}
    train(args.stage, cfg, args.data, out, manifest=args.manifest, resume=args.resume, **extra,
          mixed_precision="no" if args.no_mixed_precision else None, progress=not args.no_progress)
    print(f"{args.stage}: done in {time.perf_counter() - t0:.0f} s -> {out}")
    if args.stage in ("all", "distill"):
        print(f"  generate with: diffcxr generate --model {out / 'pipeline'} \"<report text>\"")
    return 0
