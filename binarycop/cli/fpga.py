"""The FINN accelerator: ``export`` (QONNX for FINN) and ``fpga estimate`` (throughput, folding search)."""

from __future__ import annotations

from pathlib import Path

from binarycop.cli.output import CommandError, emit, failing_as


def register(commands) -> None:
    for add in (_add_export, _add_estimate):
        add(commands)


def _add_export(commands) -> None:
    export = commands.add_parser(
        "export", help="export a network for FINN (qonnx), or its FP32 twin for the onnx backend (twin-onnx)"
    )
    export.add_argument("--model", default="n-cnv", help="shipped model name or .npz path")
    export.add_argument(
        "--format",
        default="qonnx",
        choices=["qonnx", "twin-onnx"],
        help="qonnx: the binary network for FINN; twin-onnx: its FP32 twin (<model>-fp32.pt) for backend onnx",
    )
    export.add_argument("--out", type=Path, required=True, help="the exported model file")
    export.add_argument("--batch", type=int, default=1, help="batch size fixed in the exported graph")
    export.add_argument(
        "--head", default="topk", choices=["topk", "scores"], help="end in TopK(1) class indices (FINN) or raw scores"
    )
    export.add_argument(
        "--random-weights", action="store_true", help="--model names an architecture: export it with seeded weights"
    )
    export.set_defaults(handler=_export)


def _export(args) -> int:
    from accel.model_file import ModelFileError
    from lab.qonnx_export import export_qonnx

    if args.format == "twin-onnx":
        from lab.twin_export import export_twin_onnx

        with failing_as("export", ModelFileError, FileNotFoundError):
            print(export_twin_onnx(args.model, args.out))
        return 0
    try:
        print(export_qonnx(args.model, args.out, args.batch, args.head, args.random_weights))
    except ModelFileError as error:
        raise CommandError(f"export: {error}; for an untrained architecture add --random-weights") from None
    return 0


def _add_estimate(commands) -> None:
    fpga = commands.add_parser("fpga", help="the FINN accelerator: throughput estimate and folding search")
    kinds = fpga.add_subparsers(required=True, metavar="KIND")
    estimate = kinds.add_parser("estimate", help="cycles per layer, bottleneck and crops/s of a folding")
    estimate.add_argument("--arch", default="n-cnv", choices=["cnv", "n-cnv", "u-cnv"], help="network (default: n-cnv)")
    estimate.add_argument("--folding", type=Path, help="FINN folding JSON (default: finn/folding/ARCH.json)")
    estimate.add_argument("--clock-mhz", type=float, default=100.0, help="accelerator clock (default: 100 MHz)")
    estimate.add_argument("--target-fps", type=float, help="search the smallest folding reaching this crops/s")
    estimate.add_argument("--out", type=Path, help="with --target-fps: write the found folding JSON here")
    estimate.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    estimate.set_defaults(handler=_estimate)


def _estimate(args) -> int:
    from accel.finn.folding import FoldingError
    from lab.fpga_estimate import print_estimate, run_estimate

    with failing_as("fpga estimate", FoldingError, ValueError):
        result = run_estimate(args.arch, args.folding, args.clock_mhz, args.target_fps, args.out)
    return emit(args, result, print_estimate)
