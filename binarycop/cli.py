"""The ``binarycop`` command line. Every ``--json`` output is one JSON document on stdout."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from pydantic import ValidationError
from redis.exceptions import RedisError

from binarycop import __version__
from binarycop.config import (
    Config,
    ConfigError,
    DetectorConfig,
    RedisConfig,
    config_schema,
    detector_name,
    detector_spec,
    load_config,
    redact_url,
    redis_client,
    validation_problems,
)

log = logging.getLogger("binarycop")
POSITIONS_HELP = (
    "hand-labelled positions of incorrectly worn faces (image,xmin,ymin,xmax,ymax,position[,note]; "
    "default: positions.csv beside the scenes' annotations/ when present)"
)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if not args.quiet else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"invalid config {error.source}:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="binarycop", description=__doc__)
    parser.add_argument("--version", action="version", version=f"binarycop {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the cameras in a config file")
    serve.add_argument("--config", required=True, type=Path)
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser("demo", help="serve the bundled sample clip with an embedded Redis")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--bind", default="127.0.0.1")
    demo.set_defaults(handler=_demo)

    exporter = commands.add_parser("exporter", help="/metrics and the status page from Redis, without cameras")
    _redis_arguments(exporter)
    exporter.add_argument("--bind", default="127.0.0.1")
    exporter.add_argument("--port", type=int, default=9108)
    exporter.set_defaults(handler=_exporter)

    status = commands.add_parser("status", help="ingesters, their cameras, lease ages and pending counts")
    _redis_arguments(status)
    status.add_argument("--config", type=Path, help="also list the config's cameras that no ingester runs")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    dashboards = commands.add_parser("dashboards", help="Grafana dashboards")
    dashboard_actions = dashboards.add_subparsers(required=True, metavar="ACTION")
    push = dashboard_actions.add_parser("push", help="create or update the dashboards through Grafana's API")
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. https://grafana.example:3000")
    push.add_argument(
        "--token", default=os.environ.get("GRAFANA_TOKEN"), help="service account token (default: $GRAFANA_TOKEN)"
    )
    push.add_argument("--prometheus-url", help="also create the datasource the dashboards use, if absent")
    push.add_argument("--json", action="store_true")
    push.set_defaults(handler=_dashboards_push)
    render = dashboard_actions.add_parser("render", help="draw each dashboard as a PNG from a real Prometheus")
    render.add_argument("--prometheus", required=True, help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    render.add_argument("--out", type=Path, required=True, help="folder for <dashboard uid>.png")
    render.add_argument("--minutes", type=float, default=10, help="time range drawn")
    render.set_defaults(handler=_dashboards_render)

    validate = commands.add_parser("validate-config", help="check a config file; non-zero exit on problems")
    validate.add_argument("file", type=Path)
    validate.set_defaults(handler=_validate)

    schema = commands.add_parser("config-schema", help="print the config's JSON Schema")
    schema.set_defaults(handler=lambda args: print(json.dumps(config_schema(), indent=2)) or 0)

    train = commands.add_parser("train", help="train a network with brevitas and fold it into a model file")
    train.add_argument("--arch", default="n-cnv", choices=["cnv", "n-cnv", "u-cnv"])
    train.add_argument("--data", nargs="+", required=True, metavar="[CLASS=]DIR")
    train.add_argument("--out", type=Path, required=True, help="model file (.npz); .pt and .ckpt beside it")
    train.add_argument("--epochs", type=int, default=60)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    train.add_argument(
        "--cache", type=Path, help="an .npz to keep the prepared crops in; reused only for the same --data"
    )
    train.add_argument("--init", type=Path, help="a .pt state dict to fine-tune (e.g. after synthetic pretraining)")
    train.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (cosine schedule)")
    train.add_argument("--threads", type=int, default=1, help="torch threads (more is slower on a busy machine)")
    train.add_argument(
        "--balance", default="labels", choices=["labels", "groups"], help="draw labels equally, or mask groups"
    )
    train.add_argument("--fp32", action="store_true", help="train the float twin instead (a .pt for gradcam only)")
    train.add_argument("--device", default="cpu", help="where the networks train: cpu (default), cuda or cuda:N")
    train.add_argument("--teacher", type=Path, help="an FP32 twin's .pt (train --fp32) to distil from")
    train.add_argument("--distill", type=float, default=0.5, help="with --teacher: share of the loss from distillation")
    train.set_defaults(handler=_train)

    crossval = commands.add_parser(
        "crossval", help="cross-validate a training recipe: one model per fold, each scored on its own fold"
    )
    crossval.add_argument("--arch", default="n-cnv", choices=["cnv", "n-cnv", "u-cnv"])
    crossval.add_argument("--data", nargs="+", required=True, metavar="[CLASS=]DIR", help="as train's --data")
    crossval.add_argument("--scenes", type=Path, required=True, help="Pascal VOC scenes (annotations/, images/)")
    crossval.add_argument("--folds", type=int, default=5)
    crossval.add_argument("--out", type=Path, required=True, help="folder for the fold models, logs and crops")
    crossval.add_argument("--epochs", type=int, default=60)
    crossval.add_argument(
        "--teacher-epochs", type=int, default=0, help="distil from an FP32 twin trained this long on each fold"
    )
    crossval.add_argument("--balance", default="groups", choices=["labels", "groups"])
    crossval.add_argument("--seed", type=int, default=0)
    crossval.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (cosine schedule)")
    crossval.add_argument("--jobs", type=int, default=1, help="folds trained at once (one torch thread each)")
    crossval.add_argument("--device", default="cpu", help="where the networks train: cpu (default), cuda or cuda:N")
    crossval.add_argument("--cache", type=Path, help="an .npz of the prepared crops (default: in --out)")
    crossval.add_argument("--positions", type=Path, metavar="FILE.csv", help=POSITIONS_HELP)
    crossval.add_argument("--json", action="store_true")
    crossval.set_defaults(handler=_crossval)

    evaluate = commands.add_parser("eval", help="accuracy of a model on labelled crops")
    evaluate.add_argument("--model", default="n-cnv", help="shipped model name or .npz path")
    evaluate.add_argument("--data", required=True, nargs="+", metavar="[CLASS=]DIR")
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the confusion matrix into a PNG")
    evaluate.add_argument(
        "--cache", type=Path, help="an .npz to keep the prepared crops in; reused only for the same --data"
    )
    evaluate.add_argument(
        "--held-out", action="store_true", help="only the faces/images training holds out (FFHQ id or image hash)"
    )
    evaluate.set_defaults(handler=_eval)
    synth = commands.add_parser("synth", help="put masks at the four positions on unmasked faces")
    synth.add_argument("--faces", required=True, type=Path, help="a folder of unmasked face images")
    synth.add_argument("--out", required=True, type=Path, help="class folders and contact_sheet.png go here")
    synth.add_argument("--templates", type=Path, default=Path("../shared/data/mask_templates"))
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--limit", type=int, help="only the first N faces")
    synth.add_argument("--json", action="store_true")
    synth.set_defaults(handler=_synth)

    gradcam = commands.add_parser("gradcam", help="Grad-CAM heat maps (conv2_2, 5x5) over the faces in images")
    gradcam.add_argument("images", nargs="+", metavar="IMAGE")
    gradcam.add_argument("--model", default="n-cnv", help="shipped model name or .npz path (its .pt beside it)")
    gradcam.add_argument("--out", required=True, type=Path, help="folder for one PNG sheet per image")
    gradcam.set_defaults(handler=_gradcam)

    scenes = commands.add_parser(
        "eval-scenes", help="detection recall and mask-group recall on real scenes with Pascal VOC boxes"
    )
    scenes.add_argument(
        "--model",
        action="append",
        help="shipped model name or .npz path (default n-cnv); repeat it to compare models on one detection pass",
    )
    scenes.add_argument("--data", required=True, type=Path, help="a folder with annotations/ and images/")
    scenes.add_argument("--split", default="held-out", choices=["held-out", "train", "all"])
    scenes.add_argument("--min-face-px", type=int, default=24, help="faces smaller than this are reported apart")
    scenes.add_argument("--json", action="store_true")
    scenes.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="draw group x class confusion (ground-truth boxes)"
    )
    scenes.add_argument("--positions", type=Path, metavar="FILE.csv", help=POSITIONS_HELP)
    scenes.add_argument(
        "--plot-positions",
        type=Path,
        metavar="FILE.png",
        help="draw position x class confusion of the labelled incorrectly worn faces (end to end, ground-truth boxes)",
    )
    _detector_arguments(scenes)
    scenes.set_defaults(handler=_eval_scenes)

    scan = commands.add_parser("scan", help="detect and classify every face in images")
    scan.add_argument("images", nargs="+", metavar="IMAGE")
    scan.add_argument("--model", default="n-cnv", help="shipped model name or .npz path")
    scan.add_argument("--json", action="store_true")
    scan.add_argument("--min-face-px", type=int, default=24, help="smaller faces are ignored")
    _detector_arguments(scan)
    scan.set_defaults(handler=_scan)

    export = commands.add_parser("export", help="export a network for FINN")
    export.add_argument("--model", default="n-cnv")
    export.add_argument("--format", default="qonnx", choices=["qonnx"])
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--batch", type=int, default=1, help="batch size fixed in the exported graph")
    export.add_argument(
        "--head", default="topk", choices=["topk", "scores"], help="end in TopK(1) class indices (FINN) or raw scores"
    )
    export.add_argument(
        "--random-weights", action="store_true", help="--model names an architecture: export it with seeded weights"
    )
    export.set_defaults(handler=_export)

    fpga = commands.add_parser("fpga", help="the FINN accelerator: throughput estimate and folding search")
    fpga_kinds = fpga.add_subparsers(required=True, metavar="KIND")
    fpga_estimate = fpga_kinds.add_parser("estimate", help="cycles per layer, bottleneck and crops/s of a folding")
    fpga_estimate.add_argument("--arch", default="n-cnv", choices=["cnv", "n-cnv", "u-cnv"])
    fpga_estimate.add_argument("--folding", type=Path, help="FINN folding JSON (default: finn/folding/ARCH.json)")
    fpga_estimate.add_argument("--clock-mhz", type=float, default=100.0)
    fpga_estimate.add_argument("--target-fps", type=float, help="search the smallest folding reaching this crops/s")
    fpga_estimate.add_argument("--out", type=Path, help="with --target-fps: write the found folding JSON here")
    fpga_estimate.add_argument("--json", action="store_true")
    fpga_estimate.set_defaults(handler=_fpga_estimate)

    bench = commands.add_parser("bench", help="measurements")
    bench_kinds = bench.add_subparsers(required=True, metavar="KIND")
    bench_slice = bench_kinds.add_parser("slice", help="frames/s of the whole slice on the bundled clip")
    bench_slice.add_argument("--backend", default="cpu", choices=["cpu", "torch"])
    bench_slice.add_argument("--repeat", type=int, default=3)
    bench_slice.add_argument(
        "--detector",
        action="append",
        metavar="KIND[@SCALES]",
        help="yunet (the server's default), blazeface or e.g. yunet@1,2; repeat it to compare (alternated, first is "
        "the anchor)",
    )
    bench_slice.add_argument("--json", action="store_true")
    bench_slice.set_defaults(handler=_bench_slice)
    bench_pipeline = bench_kinds.add_parser("pipeline", help="how many real camera streams this machine sustains")
    bench_pipeline.add_argument("--cameras", type=int, help="run this many only (default: search)")
    bench_pipeline.add_argument(
        "--seconds",
        type=float,
        default=14,
        help="measured seconds per trial (14; a multiple of 3.5 s, one face set, keeps the people figure whole)",
    )
    bench_pipeline.add_argument(
        "--detector",
        action="append",
        metavar="KIND[@SCALES]",
        help="yunet (the server's default), blazeface or e.g. yunet@0.5; repeat it to compare (decoding alone is "
        "searched once)",
    )
    bench_pipeline.add_argument("--json", action="store_true")
    bench_pipeline.set_defaults(handler=_bench_pipeline)
    bench_soak = bench_kinds.add_parser("soak", help="resident memory of the serving processes over a long run")
    bench_soak.add_argument("--cameras", type=int, default=4, help="1280x720 loopback MJPEG cameras (default 4)")
    bench_soak.add_argument("--minutes", type=float, default=30, help="measured minutes after the warm-up (30)")
    bench_soak.add_argument("--every", type=float, default=60, help="seconds between memory samples (60)")
    bench_soak.add_argument("--warm-up", type=float, default=60, help="seconds run before the first sample (60)")
    bench_soak.add_argument("--detector", metavar="KIND[@SCALES]", help="default: the server's default detector")
    bench_soak.add_argument("--json", action="store_true")
    bench_soak.set_defaults(handler=_bench_soak)
    bench_faces = bench_kinds.add_parser("faces", help="small faces found in generated crowd frames, per tiling")
    bench_faces.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder with maskedface/")
    bench_faces.add_argument("--sizes", default="24,32,48", help="face box sides in pixels, comma-separated")
    bench_faces.add_argument("--tiles", default="off,auto,320,256,192,160", help="tilings: off, auto or pixels")
    bench_faces.add_argument("--json", action="store_true")
    bench_faces.set_defaults(handler=_bench_faces)
    bench_classifier = bench_kinds.add_parser("classifier", help="CPU engine vs onnxruntime and torch, side by side")
    bench_classifier.add_argument("--arch", default="n-cnv", choices=["cnv", "n-cnv", "u-cnv"])
    bench_classifier.add_argument("--batch", type=int, default=256)
    bench_classifier.add_argument("--rounds", type=int, default=5)
    bench_classifier.add_argument(
        "--backend", default="cpu", choices=["cpu", "finn"], help="cpu: engine vs anchors; finn: the FPGA on a board"
    )
    bench_classifier.add_argument("--bitfile", help="finn: the accelerator's .bit (its .hwh beside it)")
    bench_classifier.add_argument("--json", action="store_true")
    bench_classifier.set_defaults(handler=_bench_classifier)
    return parser


def _redis_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="default: $REDIS_URL")
    parser.add_argument("--tls-ca", type=Path, help="CA file to verify a rediss:// server with")
    parser.add_argument("--tls-cert", type=Path, help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", type=Path, help="client certificate's key")
    parser.set_defaults(redis_password=os.environ.get("REDIS_PASSWORD") or None)


def _redis_config(args) -> RedisConfig:
    """The Redis settings of ``exporter`` and ``status``: URL and TLS files from flags, password from
    $REDIS_PASSWORD (never a flag: command lines are visible to every user of the machine)."""
    tls = None
    if args.tls_ca or args.tls_cert or args.tls_key:
        tls = {"ca_file": args.tls_ca, "cert_file": args.tls_cert, "key_file": args.tls_key}
    try:
        return RedisConfig.model_validate({"url": args.redis_url, "password": args.redis_password, "tls": tls})
    except ValidationError as error:
        raise ConfigError("command line", validation_problems(error, top="redis")) from None


def _status(args) -> int:
    from stats.fleet import fleet_status, format_status

    if not args.redis_url:
        print("status needs --redis-url or REDIS_URL: the Redis the ingesters share", file=sys.stderr)
        return 2
    cameras = [camera.name for camera in load_config(args.config).cameras] if args.config else None

    async def read() -> dict:
        client = redis_client(_redis_config(args), timeout=5)
        try:
            return await fleet_status(client, cameras)
        finally:
            await client.aclose()

    try:
        status = asyncio.run(read())
    except (RedisError, OSError) as error:
        print(f"Redis at {redact_url(args.redis_url)} unreachable: {error}", file=sys.stderr)
        return 1
    print(json.dumps(status) if args.json else format_status(status))
    return 0


def _dashboards_push(args) -> int:
    from binarycop.grafana import PushError, push_dashboards

    try:
        results = push_dashboards(args.url, args.token, args.prometheus_url)
    except PushError as error:
        print(f"dashboards push failed: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(results))
    else:
        for result in results:
            print(f"{result['uid']}: {result['status']} version {result['version']} {result['url']}")
    return 0


def _dashboards_render(args) -> int:
    from binarycop.dashboard_render import render_all
    from binarycop.grafana import load_dashboards

    for path, drawn in render_all(load_dashboards(), args.prometheus, args.out, args.minutes).items():
        empty = [title for title, count in drawn.items() if not count]
        print(f"{path}: {len(drawn)} panels" + (f", no data in: {', '.join(empty)}" if empty else ""))
    return 0


def _bench_detectors(args) -> list:
    """The benches' repeatable ``--detector KIND[@SCALES]`` (the server's default when none is given)."""
    return [detector_spec(text) for text in args.detector] if args.detector else [DetectorConfig()]


def _bench_pipeline(args) -> int:
    from binarycop.bench.pipeline import bench_pipeline

    detectors = _bench_detectors(args)
    result = bench_pipeline(args.cameras, args.seconds, detectors=detectors)
    if args.json:
        print(json.dumps(result))
        return 0
    for figure in result.get("detectors", [result]):
        versus = figure["cameras_vs_first"]
        print(
            f"{figure['detector']}: cameras sustained: {figure['cameras_sustained']} "
            f"({f'{versus:.2f}x the first' if versus is not None else 'the first sustained none'}; "
            f"decode alone: {figure['decode_only_cameras']}); "
            f"drop {figure['drop_ratio']:.2%}, p95 latency {figure['p95_latency_s']} s, "
            f"{figure['crops_per_s']:.0f} crops/s, people counted "
            + (f"{figure['people_vs_shown']:.0%} of shown" if figure.get("people_vs_shown") is not None else "-")
        )
    return 0


def _bench_soak(args) -> int:
    from binarycop.bench.soak import bench_soak

    if args.cameras < 1 or args.minutes <= 0 or args.every <= 0 or args.warm_up < 0:
        print("bench soak: --cameras >= 1, --minutes and --every > 0, --warm-up >= 0", file=sys.stderr)
        return 2
    result = bench_soak(args.cameras, args.minutes, args.every, args.warm_up, _detector_config(args))
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['detector']}, {result['cameras']} cameras, {result['minutes']:g} min after "
        f"{result['warm_up_seconds']:g} s warm-up, {result['frames_processed']} frames processed:"
    )
    for name, figure in result["processes"].items():
        print(
            f"  {name}: resident {figure['start_mb']} MB -> {figure['end_mb']} MB "
            f"(peak {figure['peak_mb']} MB, growth {figure['growth']:+.1%})"
        )
    return 0


def _bench_faces(args) -> int:
    from binarycop.bench.faces import bench_faces, tile_of

    tilings = tuple(args.tiles.split(","))
    try:
        [tile_of(name) for name in tilings]
    except ValueError as error:
        print(f"--tiles: {error}", file=sys.stderr)
        return 2
    result = bench_faces(args.data, sizes=tuple(int(size) for size in args.sizes.split(",")), tilings=tilings)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"faces found (IoU >= {result['found_iou']}) of {result['faces_per_frame']} per frame; inferences per frame")
    for row in result["results"]:
        print(
            f"  {row['frame']:>9} {row['face_px']:>3} px  tile {row['tile']:>4}: "
            f"{row['recall']:6.1%}  ({row['inferences']} inferences)"
        )
    return 0


def _bench_classifier(args) -> int:
    from binarycop.bench.classifier import bench_classifier

    if args.backend == "finn":
        return _bench_finn(args)
    result = bench_classifier(args.arch, args.batch, args.rounds)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['arch']} ({result['model']}), medians of {args.rounds} alternating rounds, "
        f"{result['threads']} threads:"
    )
    for key in ("engine", "onnxruntime_fp32", "onnxruntime_int8", "torch", "fpga_paper"):
        print(f"  {key:<18} {result[key + '_crops_per_s']:>10,.0f} crops/s")
    print(
        f"  engine / best onnxruntime: {result['ratio_vs_onnxruntime']:.2f}x; "
        f"batch-1 latency {result['batch1_latency_ms']:.3f} ms; model {result['engine_model_bytes']:,} bytes"
    )
    return 0


def _fpga_estimate(args) -> int:
    from accel.finn.folding import FoldingError
    from lab.fpga_estimate import print_estimate, run_estimate

    try:
        result = run_estimate(args.arch, args.folding, args.clock_mhz, args.target_fps, args.out)
    except (FoldingError, ValueError) as error:
        print(f"fpga estimate: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print_estimate(result)
    return 0


def _bench_finn(args) -> int:
    from accel.finn import FpgaUnavailable
    from binarycop.bench.classifier import bench_finn

    try:
        result = bench_finn(args.arch, args.bitfile, args.batch, args.rounds)
    except (FpgaUnavailable, FileNotFoundError, ValueError) as error:
        print(f"bench classifier --backend finn: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
        return 0
    engine = result["engine_crops_per_s"]
    print(f"{result['arch']} on the FPGA, medians of {args.rounds} alternating rounds, batch {result['batch']}:")
    print(f"  fpga        {result['fpga_crops_per_s']:>10,.0f} crops/s")
    print(f"  paper       {result['fpga_paper_crops_per_s']:>10,.0f} crops/s (ratio {result['ratio_to_paper']:.2f})")
    if engine is not None:
        print(f"  cpu engine  {engine:>10,.0f} crops/s on the board's CPU")
        agreement = result["classes_equal_engine"]
        print(f"  classes equal to the engine's on {result['checked_crops']} {result['checked_on']}: {agreement:.2%}")
    return 0


def _export(args) -> int:
    from accel.model_file import ModelFileError
    from lab.qonnx_export import export_qonnx

    try:
        print(export_qonnx(args.model, args.out, args.batch, args.head, args.random_weights))
    except ModelFileError as error:
        print(f"export: {error}; for an untrained architecture add --random-weights", file=sys.stderr)
        return 2
    return 0


def _bench_slice(args) -> int:
    from binarycop.bench.slice import bench_slice

    detectors = _bench_detectors(args)
    result = bench_slice(args.backend, args.repeat, detectors)
    if args.json:
        print(json.dumps(result))
        return 0
    for figure in result.get("detectors", [result]):
        print(
            f"slice, {figure['detector']}: {figure['slice_frames_per_s']:.1f} frames/s "
            f"({figure['speed_vs_first']:.2f}x the first; {result['faces_per_frame']} faces each, "
            f"backend {result['backend']}); per frame: decode {figure['decode_ms']:.2f} ms, "
            f"detect+crop {figure['detect_and_crop_ms']:.2f} ms, classify {figure['classify_ms']:.3f} ms"
        )
    return 0


def _exporter(args) -> int:
    if not args.redis_url:
        print(
            "exporter needs --redis-url or REDIS_URL: it serves what ingesters wrote to a shared Redis", file=sys.stderr
        )
        return 2
    return asyncio.run(_run_exporter(_redis_config(args), args.bind, args.port))


async def _run_exporter(redis: RedisConfig, bind: str, port: int) -> int:
    from stats.web import CountsWeb, ListenError

    redis_url = redis.url
    client = redis_client(redis)
    web = CountsWeb(client, redact_url(redis_url))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await web.start(bind, port)
        except ListenError as error:
            print(f"exporter: --bind, --port: {error}", file=sys.stderr)
            return 2
        print(
            f"metrics      http://{bind}:{web.port}/metrics\nredis        {redact_url(redis_url)}",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
    finally:
        await web.stop()
        await client.aclose()
    return 0


def _check_model(config: Config, source: str) -> None:
    """Load the configured model file (as the server will) so a bad one is an error now, not at start-up."""
    from accel import ModelFileError, load_model

    classifier = config.classifier
    try:
        load_model(classifier.model)
    except ModelFileError as error:
        raise ConfigError(source, [f"classifier.model: {error}"]) from None
    except (MemoryError, AttributeError, KeyError, OSError, ValueError) as error:  # what numpy raises on odd archives
        raise ConfigError(
            source, [f"classifier.model: {classifier.model}: not a readable model file ({type(error).__name__})"]
        ) from None
    if classifier.bitfile and not Path(classifier.bitfile).is_file():
        raise ConfigError(source, [f"classifier.bitfile: {classifier.bitfile}: no such file"])


def _validate(args) -> int:
    config = load_config(args.file)
    _check_model(config, str(args.file))
    print(
        f"{args.file}: ok, {len(config.cameras)} camera(s): "
        + ", ".join(f"{c.name} ({c.display_url})" for c in config.cameras)
    )
    return 0


def _serve(args) -> int:
    config = load_config(args.config)
    _check_model(config, str(args.config))
    return asyncio.run(_run(config, config_path=args.config))


def _demo(args) -> int:
    from binarycop.democlip import demo_config

    return asyncio.run(_run(demo_config(args.bind, args.port), demo=True))


async def _run(config: Config, demo: bool = False, config_path: Path | None = None) -> int:
    from binarycop.server import Server
    from stats.embedded import EmbeddedRedis, default_data_dir

    embedded = None
    redis_url = config.redis.url or os.environ.get("REDIS_URL") or None
    if redis_url is None:
        directory = None if demo else default_data_dir()
        embedded = EmbeddedRedis(str(directory) if directory else None)
        redis_url = embedded.url
        config = config.model_copy(update={"redis": RedisConfig()})  # the embedded one has no password
        log.info("no Redis URL configured: started an embedded Redis (data: %s)", directory or "temporary")
    server = Server(config, redis_url, config_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
        base = server.base_url
        print(
            f"status page  {base}/\nmetrics      {base}/metrics\nhealth       {base}/healthz  {base}/readyz\n"
            f"redis        {redact_url(redis_url)}\n(Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()
    finally:
        await server.stop()
        if embedded is not None:
            embedded.close()
    return server.exit_status  # 1: counts were lost at the stop (logged)


def _device_problem(name: str) -> str | None:
    """Why training cannot run on ``name``, or None."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as error:
        return f"--device {name!r}: {error}"
    if device.type not in ("cpu", "cuda"):
        return f"--device {name!r}: expected cpu, cuda or cuda:N"
    if device.type == "cuda" and not torch.cuda.is_available():
        return f"--device {name!r}: torch sees no CUDA GPU here; use --device cpu"
    return None


def _train(args) -> int:
    from lab.train import TrainOptions, train

    problem = _device_problem(args.device)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    train(
        args.data,
        args.out,
        TrainOptions(
            arch=args.arch,
            epochs=args.epochs,
            seed=args.seed,
            learning_rate=args.lr,
            threads=args.threads,
            init=args.init,
            fp32=args.fp32,
            balance=args.balance,
            teacher=args.teacher,
            distill=args.distill,
            device=args.device,
        ),
        resume=args.resume,
        cache=args.cache,
    )
    return 0


def _crossval(args) -> int:
    from lab.crossval import CrossvalPlan, cross_validate

    problem = _device_problem(args.device)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    plan = CrossvalPlan(
        arch=args.arch,
        folds=args.folds,
        epochs=args.epochs,
        teacher_epochs=args.teacher_epochs,
        balance=args.balance,
        seed=args.seed,
        learning_rate=args.lr,
        sources=list(args.data),
    )
    try:
        from lab.scenes import positions_file

        positions = positions_file(args.scenes, args.positions)
        result = cross_validate(plan, args.scenes, args.out, args.cache, args.jobs, args.device, positions)
    except (FileNotFoundError, ValueError) as error:
        print(f"crossval: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.arch}, {args.folds} folds: each model scored on the fold it never saw (95 % intervals)")
    for fold in result["per_fold"]:
        scenes = fold["scenes_ground_truth_boxes"]
        print(
            f"  fold {fold['fold']}: MaskedFace-Net {_percent(fold['maskedface_4class']['value'])}, "
            f"no_mask {_percent(fold['no_mask_recall']['value'])}, scenes "
            + " / ".join(_percent(value) for value in scenes["recall"].values())
            + f" mean {_percent(scenes['mean'])} ({scenes['support']['mask_weared_incorrect']} incorrectly worn)"
        )
    pooled = result["pooled"]
    scenes = pooled["scenes_ground_truth_boxes"]
    for key, label in (("maskedface_4class", "MaskedFace-Net 4-class"), ("no_mask_recall", "no_mask recall")):
        print(
            f"pooled {label}: {_with_interval(pooled[key]['value'], pooled[key]['interval_95'])} of {pooled[key]['n']}"
        )
    for group, recall in scenes["recall"].items():
        print(
            f"pooled scenes {group}: {_with_interval(recall, scenes['recall_interval_95'][group])} "
            f"of {scenes['support'][group]}"
        )
    spread = result["scene_mean_over_folds"]
    print(
        f"pooled scenes mean {_percent(scenes['mean'])}; fold means {_percent(spread['min'])} to "
        f"{_percent(spread['max'])}, median {_percent(spread['median'])}"
    )
    if "positions_ground_truth_boxes" in pooled:
        print(f"positions ({result['positions_file']}), ground-truth boxes, each fold's model on its own fold:")
        for fold in result["per_fold"]:
            part = fold["positions_ground_truth_boxes"]
            print(
                f"  fold {fold['fold']}: "
                + ", ".join(f"{p} {_percent(part['recall'][p])} of {part['support'][p]}" for p in part["positions"])
                + f"; macro {_percent(part['macro_mean'])}"
            )
        _print_positions("pooled", pooled["positions_ground_truth_boxes"])
    return 0


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _with_interval(value: float | None, interval) -> str:
    return (
        _percent(value) if interval is None else f"{_percent(value)} [{100 * interval[0]:.1f}-{100 * interval[1]:.1f}]"
    )


def _eval(args) -> int:
    from accel import ModelFileError, make_classifier
    from lab.dataset import describe_held_out, held_out_mask, held_out_of, load_sources
    from lab.evaluate import evaluate_crops, save_confusion_plot

    try:
        classifier = make_classifier("cpu", args.model)
        data = load_sources(args.data, args.cache)
    except (ModelFileError, FileNotFoundError, ValueError) as error:
        print(f"eval: {error}", file=sys.stderr)
        return 2
    if args.held_out:
        try:
            held_out_percent, fold = held_out_of(classifier.model.meta)
        except ValueError as error:
            print(f"eval: {args.model}: {error}", file=sys.stderr)
            return 2
        data = data.subset(held_out_mask(data.groups, held_out_percent, fold))
        print(f"held out as in training: {describe_held_out(held_out_percent, fold)}", file=sys.stderr)
    if not len(data):
        print(f"eval: no labelled images found in {' '.join(args.data)}", file=sys.stderr)
        return 2
    result = evaluate_crops(classifier, data)
    if args.plot:
        title = f"{classifier.model_name} on {', '.join(Path(d).name for d in args.data)}: {result['accuracy']:.2%}"
        print(f"confusion matrix: {save_confusion_plot(result, args.plot, title)}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"accuracy {result['accuracy']:.4f} on {result['n']} crops")
        for name, recall in result["per_class_recall"].items():
            print(f"  {name:<11} recall {recall:.4f}")
    return 0


def _synth(args) -> int:
    from lab.synth import synthesise

    try:
        result = synthesise(args.faces, args.out, args.templates, args.seed, args.limit)
    except FileNotFoundError as error:
        print(f"synth: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['written']} masked faces from {result['faces']} images "
            f"({result['no_landmarks']} without landmarks); contact sheet: {result['contact_sheet']}"
        )
    return 0


def _gradcam(args) -> int:
    from accel import ModelFileError
    from lab.gradcam import gradcam_images

    try:
        for path in gradcam_images(args.model, args.images, args.out):
            print(path)
    except (ModelFileError, ValueError) as error:
        print(f"gradcam: {error}", file=sys.stderr)
        return 2
    return 0


def _detector_arguments(parser) -> None:
    parser.add_argument(
        "--detector",
        metavar="KIND[@SCALES]",
        help="face detector, e.g. blazeface or yunet@1,2 (default: the server's default detector settings, "
        f"{detector_name(DetectorConfig())})",
    )


def _offline_detector(args):
    from lab.scan import offline_detector

    return offline_detector(_detector_config(args))


def _detector_config(args) -> DetectorConfig:
    """``--detector KIND[@SCALES]``, or the server's default detector settings."""
    return detector_spec(args.detector) if args.detector else DetectorConfig()


def _group_recall_text(part: dict, group: str) -> str:
    """``with_mask 91.5% [88%-94%] of 270`` (recall, its 95 % interval, support) or ``with_mask -``."""
    recall = part["recall"][group]
    if recall is None:
        return f"{group} -"
    low, high = part["recall_interval_95"][group]
    return f"{group} {recall:.1%} [{low:.0%}-{high:.0%}] of {part['support'][group]}"


def _eval_scenes(args) -> int:
    from accel import ModelFileError, make_classifier
    from lab.dataset import describe_held_out, held_out_of
    from lab.scenes import POSITIONS_FILE, evaluate_scenes, positions_file

    models = args.model or ["n-cnv"]
    for option, plot in (("--plot", args.plot), ("--plot-positions", args.plot_positions)):
        if plot and len(models) > 1:
            print(f"eval-scenes: {option} draws one model's confusion; give one --model with it", file=sys.stderr)
            return 2
        if plot and plot.suffix.lower() != ".png":
            print(f"eval-scenes: {option} {plot}: write a PNG; give a .png file name", file=sys.stderr)
            return 2
    try:
        positions = positions_file(args.data, args.positions)
        if args.plot_positions and positions is None:
            raise FileNotFoundError(
                f"--plot-positions: no {POSITIONS_FILE} in {args.data}; give the positions with --positions FILE"
            )
        detector = _offline_detector(args)
        classifiers = [make_classifier("cpu", model) for model in models]
        splits = {model: held_out_of(classifier.model.meta) for model, classifier in zip(models, classifiers)}
        if len(set(splits.values())) > 1 and args.split != "all":
            raise ValueError(
                "the models held out different splits in training ("
                + ", ".join(f"{model}: {describe_held_out(*split)}" for model, split in splits.items())
                + "); compare them one at a time, or with --split all"
            )
        held_out_percent, fold = splits[models[0]]
        results = evaluate_scenes(
            classifiers, args.data, detector, args.min_face_px, args.split, held_out_percent, fold, positions
        )
        for result in results:
            result["detector"] = detector_name(_detector_config(args))
    except (ModelFileError, FileNotFoundError, ValueError) as error:
        print(f"eval-scenes: {error}", file=sys.stderr)
        return 2
    if args.plot:
        from lab.evaluate import save_confusion_plot

        result = results[0]
        part = {"confusion": result["ground_truth_boxes"]["confusion"], "classes": result["classes"]}
        title = (
            f"{result['model']} on {result['split']} scenes, ground-truth boxes: "
            f"mean {_percent(result['ground_truth_boxes']['mean'])}"
        )
        save_confusion_plot(part, args.plot, title, rows=result["groups"])
        print(f"confusion matrix: {args.plot}", file=sys.stderr)
    if args.plot_positions:
        from lab.evaluate import save_confusion_panels

        result = results[0]
        panels = []
        for key, label in (("end_to_end", "end to end"), ("ground_truth_boxes", "ground-truth boxes")):
            part = result["positions"][key]
            title = f"{result['model']}, {result['split']}, {label}: n={part['n']}, macro "
            title += f"{'+'.join(part['macro_positions'])} {_percent(part['macro_mean'])}"
            panels.append((part, title, part["positions"]))
        save_confusion_panels(panels, args.plot_positions, "--plot-positions")
        print(f"position confusion: {args.plot_positions}", file=sys.stderr)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else {**results[0], "models": results}))
        return 0
    for result in results:
        _print_scene_result(result)
    return 0


def _print_scene_result(result: dict) -> None:
    detection = result["detection"]
    print(
        f"{result['model']} on {result['images']} {result['split']} scenes ({result['held_out']} held out in "
        f"training): {result['faces']} faces, "
        f"{result['faces_min_px']} >= {result['min_face_px']} px; detector {result.get('detector', '-')}"
    )
    by_group = ", ".join(f"{g} {_percent(r)}" for g, r in detection["recall_min_px_by_group"].items())
    print(
        f"  detection recall (IoU >= 0.4): all {detection['recall_all']:.1%}, large {detection['recall_min_px']:.1%}"
        f" ({by_group})"
    )
    for key in ("end_to_end", "ground_truth_boxes"):
        part = result[key]
        recalls = ", ".join(_group_recall_text(part, group) for group in part["recall"])
        print(f"  {key:<18} n={part['n']:<5} {recalls}; mean {_percent(part['mean'])}")
    operator = result["operator"]
    flagged = operator["noncompliant_flagged"]
    interval = operator["noncompliant_flagged_interval_95"]
    print(
        f"  operator reads     compliance {_percent(operator['compliance_read'])} of {operator['faces_counted']} faces "
        f"counted, truth {_percent(operator['compliance_true'])} of {operator['faces_true']}; mean abs error over "
        f"{operator['groups']} groups of {operator['group_photos']} photos "
        f"{_points(operator['mean_abs_error'])} (mean {_points(operator['mean_error'], signed=True)}); "
        f"non-compliant flagged {_percent(flagged)}"
        + (f" [{interval[0]:.0%}-{interval[1]:.0%}] of {operator['noncompliant']}" if interval else "")
    )
    positions = result.get("positions")
    if positions:
        print(f"  positions ({positions['file']}, {positions['rows']} rows; correct/other/unsure apart):")
        for key in ("end_to_end", "ground_truth_boxes"):
            _print_positions(key, positions[key], "    ")


def _print_positions(label: str, part: dict, indent: str = "  ") -> None:
    """The position figures of ``lab.scenes.position_recalls``: a confusion table with each row's exact-position
    recall and share called some incorrect position (95 % intervals), the macro mean, the faces reported apart."""
    classes = part["classes"]
    print(
        f"{indent}{label}: exact position of {part['n']} labelled incorrectly worn faces; macro over "
        f"{' and '.join(part['macro_positions'])} {_percent(part['macro_mean'])}; all three "
        f"{_with_interval(part['exact'], part['exact_interval_95'])}, some incorrect position "
        f"{_with_interval(part['some_incorrect_all'], part['some_incorrect_all_interval_95'])}"
    )
    print(
        f"{indent}  {'labelled':<11}{'n':>5} "
        + "".join(f"{c:>11}" for c in classes)
        + "   exact [95 %]   some incorrect"
    )
    for row, position in enumerate(part["positions"]):
        print(
            f"{indent}  {position:<11}{part['support'][position]:>5} "
            + "".join(f"{count:>11}" for count in part["confusion"][row])
            + f"   {_with_interval(part['recall'][position], part['recall_interval_95'][position]):<15}"
            + f" {_with_interval(part['some_incorrect'][position], part['some_incorrect_interval_95'][position])}"
        )
    apart = "; ".join(
        f"{name} {value['n']}: " + (", ".join(f"{c} {k}" for c, k in value["called"].items() if k) or "-")
        for name, value in part["apart"].items()
    )
    print(f"{indent}  apart (not in the figures): {apart}; incorrectly worn unlabelled: {part['unlabelled']}")


def _points(share: float | None, signed: bool = False) -> str:
    """A difference of shares in percentage points: ``4.2 points`` (``+4.2`` when signed)."""
    if share is None:
        return "-"
    return f"{100 * share:+.1f} points" if signed else f"{100 * share:.1f} points"


def _scan(args) -> int:
    from accel import ModelFileError, make_classifier
    from lab.scan import Scanner, offline_detector

    try:
        detector = offline_detector(_detector_config(args).model_copy(update={"min_face_px": args.min_face_px}))
        results = Scanner(make_classifier("cpu", args.model), detector).scan_files(args.images)
    except (ModelFileError, ValueError) as error:
        print(f"scan: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results))
        return 0
    for result in results:
        print(f"{result['image']}: {len(result['faces'])} face(s)")
        for face in result["faces"]:
            box = ", ".join(f"{v:.0f}" for v in face["box"])
            print(f"  [{box}] {face['class']} ({face['score']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
