"""``bench slice | pipeline | soak | http | faces | classifier``: the side-by-side benchmarks (binarycop/bench/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from binarycop.cli.options import detector_config, detector_configs
from binarycop.cli.output import CommandError, emit, failing_as


def register(commands) -> None:
    bench = commands.add_parser("bench", help="measurements")
    kinds = bench.add_subparsers(required=True, metavar="KIND")
    for add in (_add_slice, _add_pipeline, _add_soak, _add_http, _add_faces, _add_classifier):
        add(kinds)


def _detectors_argument(parser, example: str, compared: str) -> None:
    """The repeatable ``--detector``: several detectors run in one bench, compared with the first."""
    help_text = f"yunet (the server's default), blazeface or e.g. {example}; repeat it to compare ({compared})"
    parser.add_argument("--detector", action="append", metavar="KIND[@SCALES][:SETTING=VALUE,...]", help=help_text)


def _add_slice(kinds) -> None:
    bench_slice = kinds.add_parser("slice", help="frames/s of the whole slice on the bundled clip")
    bench_slice.add_argument(
        "--backend", default="cpu", choices=["cpu", "torch"], help="classifier backend (default: cpu)"
    )
    bench_slice.add_argument("--repeat", type=int, default=3, help="runs; the median is reported (default: 3)")
    _detectors_argument(bench_slice, example="yunet@1,2", compared="alternated, first is the anchor")
    bench_slice.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    bench_slice.set_defaults(handler=_slice)


def _slice(args) -> int:
    from binarycop.bench.slice import bench_slice

    result = bench_slice(args.backend, args.repeat, detector_configs(args))
    return emit(args, result, _print_slice)


def _print_slice(result: dict) -> None:
    for figure in result.get("detectors", [result]):
        print(
            f"slice, {figure['detector']}: {figure['slice_frames_per_s']:.1f} frames/s "
            f"({figure['speed_vs_first']:.2f}x the first; {result['faces_per_frame']} faces each, "
            f"backend {result['backend']}); per frame: decode {figure['decode_ms']:.2f} ms, "
            f"detect+crop {figure['detect_and_crop_ms']:.2f} ms, classify {figure['classify_ms']:.3f} ms"
        )


def _add_pipeline(kinds) -> None:
    bench_pipeline = kinds.add_parser("pipeline", help="how many real camera streams this machine sustains")
    bench_pipeline.add_argument("--cameras", type=int, help="run this many only (default: search)")
    bench_pipeline.add_argument(
        "--scene",
        choices=["crowd", "venue"],
        default="crowd",
        help="what the cameras show: crowd (the worst case: faces moving in view most of the time; the default) or "
        "venue (people come and go over a still background, in view a third of the time)",
    )
    bench_pipeline.add_argument(
        "--seconds",
        type=float,
        help="measured seconds per trial (crowd 14: a multiple of 3.5 s, one face set, keeps the people figure "
        "whole; venue 90)",
    )
    _detectors_argument(
        bench_pipeline,
        example="yunet:keep_still=false (today's code before motion)",
        compared="decoding alone is searched once",
    )
    bench_pipeline.add_argument(
        "--no-decode", action="store_true", help="skip the search of decoding alone (the reference)"
    )
    bench_pipeline.add_argument(
        "--classifier",
        action="append",
        metavar="BACKEND:MODEL",
        help="a classifier to run, e.g. onnx:n-cnv-fp32; repeat to compare (default: the server's, cpu:n-cnv)",
    )
    bench_pipeline.add_argument(
        "--processes",
        action="append",
        type=_processes,
        metavar="N|auto",
        help="ingester processes the server runs (ingester.processes; default: auto, one per core, as serve runs); "
        "repeat to compare, e.g. --processes 1 --processes auto",
    )
    bench_pipeline.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    bench_pipeline.set_defaults(handler=_pipeline)


def _processes(value: str) -> int | str:
    """``--processes``, checked as ``ingester.processes`` is."""
    from pydantic import ValidationError

    from binarycop.config import MAX_PROCESSES, IngesterConfig

    try:
        return IngesterConfig(processes=int(value) if value.isdigit() else value).processes
    except ValidationError:
        problem = f"expected 'auto' or a count from 1 to {MAX_PROCESSES}, not {value!r}"
        raise argparse.ArgumentTypeError(problem) from None


def _pipeline(args) -> int:
    from binarycop.bench.pipeline import bench_pipeline

    result = bench_pipeline(
        args.cameras,
        args.seconds,
        detectors=detector_configs(args),
        classifiers=_classifier_configs(args.classifier),
        scene=args.scene,
        decode_only=not args.no_decode,
        processes=args.processes,
    )
    return emit(args, result, _print_pipeline)


def _classifier_configs(names: list[str] | None) -> list | None:
    """``BACKEND:MODEL`` options as classifier settings, checked as a config's would be."""
    from pydantic import ValidationError

    from binarycop.config import ClassifierConfig

    if not names:
        return None
    configs = []
    for name in names:
        backend, _, model = name.partition(":")
        try:
            configs.append(ClassifierConfig(backend=backend, model=model or "n-cnv"))
        except ValidationError as error:
            problem = error.errors()[0]["msg"].removeprefix("Value error, ")
            raise CommandError(f"--classifier {name}: {problem}") from None
    return configs


def _print_pipeline(result: dict) -> None:
    for figure in result.get("detectors", [result]):
        versus = figure["cameras_vs_first"]
        print(
            f"{figure['scene']}, {figure['detector']}, {figure['classifier']}, processes {figure['processes']}"
            f"{f' ({run})' if (run := figure.get('processes_run')) is not None and run != figure['processes'] else ''}"
            ": cameras sustained: "
            f"{figure['cameras_sustained']} "
            f"({f'{versus:.2f}x the first' if versus is not None else 'the first sustained none'}; "
            f"decode alone: {figure['decode_only_cameras'] if figure['decode_only_cameras'] is not None else '-'}); "
            f"drop {figure['drop_ratio']:.2%}, p95 latency {figure['p95_latency_s']} s, "
            f"{figure['crops_per_s']:.0f} crops/s, people counted "
            + (f"{figure['people_vs_shown']:.0%} of shown" if figure.get("people_vs_shown") is not None else "-")
            + f"; load {figure['load_at_start']} at the start"
        )


def _add_soak(kinds) -> None:
    bench_soak = kinds.add_parser("soak", help="resident memory of the serving processes over a long run")
    bench_soak.add_argument("--cameras", type=int, default=4, help="1280x720 loopback MJPEG cameras (default 4)")
    bench_soak.add_argument("--minutes", type=float, default=30, help="measured minutes after the warm-up (30)")
    bench_soak.add_argument("--every", type=float, default=60, help="seconds between memory samples (60)")
    bench_soak.add_argument("--warm-up", type=float, default=60, help="seconds run before the first sample (60)")
    bench_soak.add_argument("--detector", metavar="KIND[@SCALES]", help="default: the server's default detector")
    bench_soak.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    bench_soak.set_defaults(handler=_soak)


def _soak(args) -> int:
    from binarycop.bench.soak import bench_soak

    if args.cameras < 1 or args.minutes <= 0 or args.every <= 0 or args.warm_up < 0:
        raise CommandError("bench soak: --cameras >= 1, --minutes and --every > 0, --warm-up >= 0")
    result = bench_soak(args.cameras, args.minutes, args.every, args.warm_up, detector_config(args))
    return emit(args, result, _print_soak)


def _add_http(kinds) -> None:
    bench_http = kinds.add_parser("http", help="camera frames lost while clients read /metrics and /api/status")
    bench_http.add_argument("--cameras", type=int, default=4, help="looping demo-clip MJPEG cameras (default 4)")
    bench_http.add_argument("--seconds", type=float, default=30, help="seconds per phase, quiet or loaded (30)")
    bench_http.add_argument("--rounds", type=int, default=2, help="quiet and loaded phases, alternated (2)")
    bench_http.add_argument("--clients", type=int, default=50, help="clients reading back to back (50)")
    bench_http.add_argument("--slow", type=int, default=50, help="clients sending headers a byte at a time (50)")
    bench_http.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    bench_http.set_defaults(handler=_http)


def _http(args) -> int:
    from binarycop.bench.http_load import bench_http

    if args.cameras < 1 or args.seconds <= 0 or args.rounds < 1 or args.clients < 0 or args.slow < 0:
        raise CommandError("bench http: --cameras and --rounds >= 1, --seconds > 0, --clients and --slow >= 0")
    result = bench_http(args.cameras, args.seconds, args.rounds, args.clients, args.slow)
    return emit(args, result, _print_http)


def _print_http(result: dict) -> None:
    for phase in result["phases"]:
        kind = "loaded" if phase["load"] else "quiet"
        line = f"{kind:>6}: {phase['processed_per_s']} frames/s, {phase['dropped']} dropped"
        if phase["load"]:
            line += f"; {phase['requests_per_s']} requests/s, p50 {phase['p50_s']} s, p95 {phase['p95_s']} s"
        print(line)
    print(f"frames lost to the load: {100 * result['frames_lost_to_load']:.1f} %")


def _print_soak(result: dict) -> None:
    print(
        f"{result['detector']}, {result['cameras']} cameras, {result['minutes']:g} min after "
        f"{result['warm_up_seconds']:g} s warm-up, {result['frames_processed']} frames processed:"
    )
    for name, figure in result["processes"].items():
        print(
            f"  {name}: resident {figure['start_mb']} MB -> {figure['end_mb']} MB "
            f"(peak {figure['peak_mb']} MB, growth {figure['growth']:+.1%})"
        )


def _add_faces(kinds) -> None:
    bench_faces = kinds.add_parser("faces", help="small faces found in generated crowd frames, per tiling")
    bench_faces.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder with maskedface/")
    bench_faces.add_argument("--sizes", default="24,32,48", help="face box sides in pixels, comma-separated")
    bench_faces.add_argument("--tiles", default="off,auto,320,256,192,160", help="tilings: off, auto or pixels")
    bench_faces.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    bench_faces.set_defaults(handler=_faces)


def _faces(args) -> int:
    from binarycop.bench.faces import bench_faces, tile_of

    tilings = tuple(args.tiles.split(","))
    with failing_as("--tiles", ValueError):
        [tile_of(name) for name in tilings]
    result = bench_faces(args.data, sizes=tuple(int(size) for size in args.sizes.split(",")), tilings=tilings)
    return emit(args, result, _print_faces)


def _print_faces(result: dict) -> None:
    print(f"faces found (IoU >= {result['found_iou']}) of {result['faces_per_frame']} per frame; inferences per frame")
    for row in result["results"]:
        print(
            f"  {row['frame']:>9} {row['face_px']:>3} px  tile {row['tile']:>4}: "
            f"{row['recall']:6.1%}  ({row['inferences']} inferences)"
        )


def _add_classifier(kinds) -> None:
    bench_classifier = kinds.add_parser("classifier", help="CPU engine vs onnxruntime and torch, side by side")
    bench_classifier.add_argument(
        "--arch", default="n-cnv", choices=["cnv", "n-cnv", "u-cnv"], help="network (default: n-cnv)"
    )
    bench_classifier.add_argument("--batch", type=int, default=256, help="crops per call (default: 256)")
    bench_classifier.add_argument(
        "--rounds", type=int, default=5, help="alternated rounds; medians are reported (default: 5)"
    )
    bench_classifier.add_argument(
        "--backend", default="cpu", choices=["cpu", "finn"], help="cpu: engine vs anchors; finn: the FPGA on a board"
    )
    bench_classifier.add_argument("--bitfile", help="finn: the accelerator's .bit (its .hwh beside it)")
    bench_classifier.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    bench_classifier.set_defaults(handler=_classifier)


def _classifier(args) -> int:
    from binarycop.bench.classifier import bench_classifier

    if args.backend == "finn":
        return _finn(args)
    result = bench_classifier(args.arch, args.batch, args.rounds)
    return emit(args, result, lambda result: _print_classifier(result, args.rounds))


def _print_classifier(result: dict, rounds: int) -> None:
    print(f"{result['arch']} ({result['model']}), medians of {rounds} alternating rounds, {result['threads']} threads:")
    for key in ("engine", "onnxruntime_fp32", "onnxruntime_int8", "torch", "fpga_paper"):
        print(f"  {key:<18} {result[key + '_crops_per_s']:>10,.0f} crops/s")
    print(
        f"  engine / best onnxruntime: {result['ratio_vs_onnxruntime']:.2f}x; "
        f"batch-1 latency {result['batch1_latency_ms']:.3f} ms; model {result['engine_model_bytes']:,} bytes"
    )


def _finn(args) -> int:
    from accel.finn import FpgaUnavailable
    from binarycop.bench.classifier import bench_finn

    with failing_as("bench classifier --backend finn", FpgaUnavailable, FileNotFoundError, ValueError):
        result = bench_finn(args.arch, args.bitfile, args.batch, args.rounds)
    return emit(args, result, lambda result: _print_finn(result, args.rounds))


def _print_finn(result: dict, rounds: int) -> None:
    engine = result["engine_crops_per_s"]
    print(f"{result['arch']} on the FPGA, medians of {rounds} alternating rounds, batch {result['batch']}:")
    print(f"  fpga        {result['fpga_crops_per_s']:>10,.0f} crops/s")
    print(f"  paper       {result['fpga_paper_crops_per_s']:>10,.0f} crops/s (ratio {result['ratio_to_paper']:.2f})")
    if engine is not None:
        print(f"  cpu engine  {engine:>10,.0f} crops/s on the board's CPU")
        agreement = result["classes_equal_engine"]
        print(f"  classes equal to the engine's on {result['checked_crops']} {result['checked_on']}: {agreement:.2%}")
