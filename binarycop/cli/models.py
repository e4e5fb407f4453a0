"""The model lab's commands: ``train``, ``crossval``, ``eval``, ``synth``, ``gradcam``, ``eval-scenes``, ``scan``."""

from __future__ import annotations

import sys
from pathlib import Path

from binarycop.cli.model_reports import percent, print_crossval, print_scene_result
from binarycop.cli.options import detector_arguments, detector_config
from binarycop.cli.output import CommandError, emit, failing_as
from binarycop.config import detector_name

ARCHS = ["cnv", "n-cnv", "u-cnv"]
DEVICE_HELP = "where the networks train: cpu (default), cuda or cuda:N"
LEARNING_RATE_HELP = "Adam learning rate (cosine schedule)"
POSITIONS_HELP = (
    "hand-labelled positions of incorrectly worn faces (image,xmin,ymin,xmax,ymax,position[,note]; "
    "default: positions.csv beside the scenes' annotations/ when present)"
)


def _framing_arguments(parser) -> None:
    """How face boxes become training crops (``detector.Framing``), recorded in the model file for the server."""
    parser.add_argument(
        "--crop-margin", type=float, default=0.2, help="crop side = the face box's larger side x (1 + this)"
    )
    parser.add_argument(
        "--crop-drop", type=float, default=0.0, help="move the crop down by this share of the box's side (chin masks)"
    )
    parser.add_argument(
        "--exact-positions",
        action="store_true",
        help="scene faces that the scenes' positions.csv places train with that position (others: any incorrect)",
    )
    parser.add_argument(
        "--near-duplicates",
        action="store_true",
        help="near-duplicate pictures of a folder source share a split group (video frames, e.g. extra/improper_mask)",
    )
    parser.add_argument(
        "--unlabelled",
        nargs="+",
        default=[],
        metavar="SOURCE",
        help="real faces without labels, learnt from the teacher only: VOC scenes (faces matching no box), videos, "
        "image folders",
    )


def _framing(args):
    from detector import Framing

    with failing_as("framing", ValueError):
        return Framing(args.crop_margin, args.crop_drop)


def register(commands) -> None:
    for add in (
        _add_train,
        _add_crossval,
        _add_eval,
        _add_synth,
        _add_gradcam,
        _add_eval_scenes,
        _add_scan,
        _add_framing,
    ):
        add(commands)


def _add_framing(commands) -> None:
    framing = commands.add_parser(
        "framing", help="how much of each real face's labelled box a crop framing keeps (masks worn on the chin)"
    )
    framing.add_argument("--data", type=Path, required=True, help="Pascal VOC scenes (annotations/, images/)")
    framing.add_argument(
        "--framing",
        action="append",
        metavar="MARGIN:DROP",
        help="a framing to measure, e.g. 0.2:0.15 (repeat; default: today's 0.2:0)",
    )
    framing.add_argument("--positions", type=Path, metavar="FILE.csv", help=POSITIONS_HELP)
    framing.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    framing.set_defaults(handler=_framing_report)


def _framing_report(args) -> int:
    from detector import Framing
    from lab.framing import framing_report
    from lab.scenes import positions_file

    with failing_as("framing", ValueError, FileNotFoundError):
        framings = []
        for text in args.framing or ["0.2:0"]:
            margin, _, drop = text.partition(":")
            try:
                framings.append(Framing(float(margin), float(drop or 0)))
            except ValueError as error:
                raise ValueError(f"--framing {text}: {error}") from None
        report = framing_report(args.data, framings, positions_file(args.data, args.positions))
    return emit(args, report, _print_framing)


def _print_framing(report: dict) -> None:
    for name, figures in report.items():
        print(f"{name}:")
        for kind, row in figures["faces"].items():
            print(
                f"  {kind}: {row['faces']} faces, labelled box whole in the crop {row['kept_whole']:.0%}, "
                f"median cut off below {row['median_cut_below']:.0%} of its height"
            )


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="train a network with brevitas and fold it into a model file")
    train.add_argument("--arch", default="n-cnv", choices=ARCHS, help="network to train (default: n-cnv)")
    train.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="[CLASS=]DIR",
        help="face folders: a folder of class folders, or CLASS=DIR for one class",
    )
    train.add_argument("--out", type=Path, required=True, help="model file (.npz); .pt and .ckpt beside it")
    train.add_argument("--epochs", type=int, default=60, help="passes over the training set (default: 60)")
    train.add_argument("--seed", type=int, default=0, help="random seed: the same seed, the same model")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    train.add_argument(
        "--cache", type=Path, help="an .npz to keep the prepared crops in; reused only for the same --data"
    )
    train.add_argument("--init", type=Path, help="a .pt state dict to fine-tune (e.g. after synthetic pretraining)")
    train.add_argument("--lr", type=float, default=5e-3, help=LEARNING_RATE_HELP)
    train.add_argument("--threads", type=int, default=1, help="torch threads (more is slower on a busy machine)")
    train.add_argument(
        "--balance", default="labels", choices=["labels", "groups"], help="draw labels equally, or mask groups"
    )
    train.add_argument("--fp32", action="store_true", help="train the float twin instead (a .pt for gradcam only)")
    train.add_argument(
        "--float-weights",
        action="store_true",
        help="binary activations over float weights (a .pt to --init a binary network from: progressive training)",
    )
    train.add_argument("--device", default="cpu", help=DEVICE_HELP)
    train.add_argument("--teacher", type=Path, help="an FP32 twin's .pt (train --fp32) to distil from")
    train.add_argument("--distill", type=float, default=0.5, help="with --teacher: share of the loss from distillation")
    _framing_arguments(train)
    train.set_defaults(handler=_train)


def _train(args) -> int:
    from lab.train import TrainOptions, train

    _check_device(args.device)
    options = TrainOptions(
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
        framing=_framing(args),
        exact_positions=args.exact_positions,
        near_duplicates=args.near_duplicates,
        unlabelled=tuple(args.unlabelled),
        float_weights=args.float_weights,
    )
    with failing_as("train", FileNotFoundError, ValueError):
        train(args.data, args.out, options, resume=args.resume, cache=args.cache)
    return 0


def _check_device(name: str) -> None:
    """Raise :class:`CommandError` saying why training cannot run on ``name``."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise CommandError(f"--device {name!r}: {error}") from None
    if device.type not in ("cpu", "cuda"):
        raise CommandError(f"--device {name!r}: expected cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {name!r}: torch sees no CUDA GPU here; use --device cpu")


def _add_crossval(commands) -> None:
    crossval = commands.add_parser(
        "crossval", help="cross-validate a training recipe: one model per fold, each scored on its own fold"
    )
    crossval.add_argument("--arch", default="n-cnv", choices=ARCHS, help="network to train (default: n-cnv)")
    crossval.add_argument("--data", nargs="+", required=True, metavar="[CLASS=]DIR", help="as train's --data")
    crossval.add_argument("--scenes", type=Path, required=True, help="Pascal VOC scenes (annotations/, images/)")
    crossval.add_argument("--folds", type=int, default=5, help="folds, each scored by a model trained on the others")
    crossval.add_argument("--out", type=Path, required=True, help="folder for the fold models, logs and crops")
    crossval.add_argument("--epochs", type=int, default=60, help="passes over each fold's training set")
    crossval.add_argument(
        "--teacher-epochs", type=int, default=0, help="distil from an FP32 twin trained this long on each fold"
    )
    crossval.add_argument(
        "--progressive-epochs",
        type=int,
        default=0,
        help="per fold, first train this long with binary activations over float weights, then binary weights from it",
    )
    crossval.add_argument(
        "--teacher-arch", default="", choices=["", *ARCHS], help="the teacher's architecture (default: the student's)"
    )
    crossval.add_argument(
        "--balance", default="groups", choices=["labels", "groups"], help="draw labels equally, or mask groups"
    )
    crossval.add_argument("--seed", type=int, default=0, help="random seed of the folds and the training")
    crossval.add_argument("--lr", type=float, default=5e-3, help=LEARNING_RATE_HELP)
    crossval.add_argument("--jobs", type=int, default=1, help="folds trained at once (one torch thread each)")
    crossval.add_argument("--device", default="cpu", help=DEVICE_HELP)
    crossval.add_argument("--cache", type=Path, help="an .npz of the prepared crops (default: in --out)")
    crossval.add_argument("--positions", type=Path, metavar="FILE.csv", help=POSITIONS_HELP)
    crossval.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    _framing_arguments(crossval)
    crossval.set_defaults(handler=_crossval)


def _crossval(args) -> int:
    from lab.crossval import CrossvalPlan, cross_validate

    _check_device(args.device)
    plan = CrossvalPlan(
        arch=args.arch,
        folds=args.folds,
        epochs=args.epochs,
        teacher_epochs=args.teacher_epochs,
        balance=args.balance,
        seed=args.seed,
        learning_rate=args.lr,
        sources=list(args.data),
        crop_margin=_framing(args).margin,
        crop_drop=_framing(args).drop,
        exact_positions=args.exact_positions,
        near_duplicates=args.near_duplicates,
        unlabelled=list(args.unlabelled),
        teacher_arch=args.teacher_arch,
        progressive_epochs=args.progressive_epochs,
    )
    with failing_as("crossval", FileNotFoundError, ValueError):
        from lab.scenes import positions_file

        positions = positions_file(args.scenes, args.positions)
        result = cross_validate(plan, args.scenes, args.out, args.cache, args.jobs, args.device, positions)
    return emit(args, result, lambda result: print_crossval(result, args.arch, args.folds))


def _add_eval(commands) -> None:
    evaluate = commands.add_parser("eval", help="accuracy of a model on labelled crops")
    evaluate.add_argument("--model", default="n-cnv", help="shipped model name or .npz path")
    evaluate.add_argument("--data", required=True, nargs="+", metavar="[CLASS=]DIR", help="as train's --data")
    evaluate.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    evaluate.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the confusion matrix into a PNG")
    evaluate.add_argument(
        "--cache", type=Path, help="an .npz to keep the prepared crops in; reused only for the same --data"
    )
    evaluate.add_argument(
        "--held-out", action="store_true", help="only the faces/images training holds out (FFHQ id or image hash)"
    )
    evaluate.set_defaults(handler=_eval)


def _eval(args) -> int:
    from accel import ModelFileError, make_classifier
    from lab.dataset import describe_held_out, held_out_mask, held_out_of, load_sources
    from lab.evaluate import evaluate_crops, save_confusion_plot

    with failing_as("eval", ModelFileError, FileNotFoundError, ValueError):
        classifier = make_classifier("cpu", args.model)
        data = load_sources(args.data, args.cache)
    if args.held_out:
        with failing_as(f"eval: {args.model}", ValueError):
            held_out_percent, fold = held_out_of(classifier.model.meta)
        data = data.subset(held_out_mask(data.groups, held_out_percent, fold))
        print(f"held out as in training: {describe_held_out(held_out_percent, fold)}", file=sys.stderr)
    if not len(data):
        raise CommandError(f"eval: no labelled images found in {' '.join(args.data)}")
    result = evaluate_crops(classifier, data)
    if args.plot:
        title = f"{classifier.model_name} on {', '.join(Path(d).name for d in args.data)}: {result['accuracy']:.2%}"
        print(f"confusion matrix: {save_confusion_plot(result, args.plot, title)}", file=sys.stderr)
    return emit(args, result, _print_eval)


def _print_eval(result: dict) -> None:
    print(f"accuracy {result['accuracy']:.4f} on {result['n']} crops")
    for name, recall in result["per_class_recall"].items():
        print(f"  {name:<11} recall {recall:.4f}")


def _add_synth(commands) -> None:
    synth = commands.add_parser("synth", help="put masks at the four positions on unmasked faces")
    synth.add_argument("--faces", required=True, type=Path, help="a folder of unmasked face images")
    synth.add_argument("--out", required=True, type=Path, help="class folders and contact_sheet.png go here")
    synth.add_argument(
        "--templates",
        type=Path,
        default=Path("../shared/data/mask_templates"),
        help="folder of mask pictures to draw onto faces",
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed: the same seed, the same pictures")
    synth.add_argument("--limit", type=int, help="only the first N faces")
    synth.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    synth.set_defaults(handler=_synth)


def _synth(args) -> int:
    from lab.synth import synthesise

    with failing_as("synth", FileNotFoundError):
        result = synthesise(args.faces, args.out, args.templates, args.seed, args.limit)
    return emit(args, result, _print_synth)


def _print_synth(result: dict) -> None:
    print(
        f"{result['written']} masked faces from {result['faces']} images "
        f"({result['no_landmarks']} without landmarks); contact sheet: {result['contact_sheet']}"
    )


def _add_gradcam(commands) -> None:
    gradcam = commands.add_parser("gradcam", help="Grad-CAM heat maps (conv2_2, 5x5) over the faces in images")
    gradcam.add_argument("images", nargs="+", metavar="IMAGE", help="pictures with faces")
    gradcam.add_argument("--model", default="n-cnv", help="shipped model name or .npz path (its .pt beside it)")
    gradcam.add_argument("--out", required=True, type=Path, help="folder for one PNG sheet per image")
    gradcam.set_defaults(handler=_gradcam)


def _gradcam(args) -> int:
    from accel import ModelFileError
    from lab.gradcam import gradcam_images

    with failing_as("gradcam", ModelFileError, ValueError):
        for path in gradcam_images(args.model, args.images, args.out):
            print(path)
    return 0


def _add_eval_scenes(commands) -> None:
    scenes = commands.add_parser(
        "eval-scenes", help="detection recall and mask-group recall on real scenes with Pascal VOC boxes"
    )
    scenes.add_argument(
        "--model",
        action="append",
        help="shipped model name or .npz path (default n-cnv), or BACKEND:MODEL for another classifier backend, "
        "e.g. onnx:n-cnv-fp32 (the FP32 twin); repeat it to compare models on one detection pass",
    )
    scenes.add_argument("--data", required=True, type=Path, help="a folder with annotations/ and images/")
    scenes.add_argument(
        "--split", default="held-out", choices=["held-out", "train", "all"], help="which scenes (default: held-out)"
    )
    scenes.add_argument("--min-face-px", type=int, default=24, help="faces smaller than this are reported apart")
    scenes.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
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
    detector_arguments(scenes)
    scenes.set_defaults(handler=_eval_scenes)


def _eval_scenes(args) -> int:
    from accel import ModelFileError

    models = args.model or ["n-cnv"]
    for option, plot in (("--plot", args.plot), ("--plot-positions", args.plot_positions)):
        if plot and len(models) > 1:
            raise CommandError(f"eval-scenes: {option} draws one model's confusion; give one --model with it")
        if plot and plot.suffix.lower() != ".png":
            raise CommandError(f"eval-scenes: {option} {plot}: write a PNG; give a .png file name")
    with failing_as("eval-scenes", ModelFileError, FileNotFoundError, ValueError):
        results = _scene_results(args, models)
    if args.plot:
        _plot_scene_confusion(results[0], args.plot)
    if args.plot_positions:
        _plot_position_confusion(results[0], args.plot_positions)
    document = results[0] if len(results) == 1 else {**results[0], "models": results}
    return emit(args, document, lambda _: [print_scene_result(result) for result in results])


def _scene_results(args, models: list[str]) -> list[dict]:
    from accel import make_classifier
    from lab.dataset import describe_held_out, held_out_of
    from lab.scan import offline_detector
    from lab.scenes import POSITIONS_FILE, evaluate_scenes, positions_file

    positions = positions_file(args.data, args.positions)
    if args.plot_positions and positions is None:
        raise FileNotFoundError(
            f"--plot-positions: no {POSITIONS_FILE} in {args.data}; give the positions with --positions FILE"
        )
    detector = offline_detector(detector_config(args))
    classifiers = [make_classifier(*_backend_and_model(model)) for model in models]
    splits = {model: held_out_of(_meta_of(classifier)) for model, classifier in zip(models, classifiers)}
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
        result["detector"] = detector_name(detector_config(args))
    return results


def _backend_and_model(spec: str) -> tuple[str, str]:
    """``onnx:n-cnv-fp32`` as ``("onnx", "n-cnv-fp32")``; a bare name or path is the ``cpu`` backend's."""
    from accel import BACKENDS

    backend, colon, model = spec.partition(":")
    if colon and backend in BACKENDS and backend != "finn":
        return backend, model
    if colon and backend.isalpha() and len(backend) > 1:  # not a Windows drive letter
        raise ValueError(f"--model {spec}: unknown backend {backend!r}; expected cpu, onnx or torch")
    return "cpu", spec


def _meta_of(classifier) -> dict:
    """A classifier's model record (the split its training held out is read from it)."""
    model = getattr(classifier, "model", None)
    return model.meta if model is not None else getattr(classifier, "meta", {})


def _plot_scene_confusion(result: dict, path: Path) -> None:
    from lab.evaluate import save_confusion_plot

    part = {"confusion": result["ground_truth_boxes"]["confusion"], "classes": result["classes"]}
    title = (
        f"{result['model']} on {result['split']} scenes, ground-truth boxes: "
        f"mean {percent(result['ground_truth_boxes']['mean'])}"
    )
    save_confusion_plot(part, path, title, rows=result["groups"])
    print(f"confusion matrix: {path}", file=sys.stderr)


def _plot_position_confusion(result: dict, path: Path) -> None:
    from lab.evaluate import save_confusion_panels

    panels = []
    for key, label in (("end_to_end", "end to end"), ("ground_truth_boxes", "ground-truth boxes")):
        part = result["positions"][key]
        title = f"{result['model']}, {result['split']}, {label}: n={part['n']}, macro "
        title += f"{'+'.join(part['macro_positions'])} {percent(part['macro_mean'])}"
        panels.append((part, title, part["positions"]))
    save_confusion_panels(panels, path, "--plot-positions")
    print(f"position confusion: {path}", file=sys.stderr)


def _add_scan(commands) -> None:
    scan = commands.add_parser("scan", help="detect and classify every face in images")
    scan.add_argument("images", nargs="+", metavar="IMAGE", help="pictures to find and classify faces in")
    scan.add_argument("--model", default="n-cnv", help="shipped model name or .npz path")
    scan.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    scan.add_argument("--min-face-px", type=int, default=24, help="smaller faces are ignored")
    detector_arguments(scan)
    scan.set_defaults(handler=_scan)


def _scan(args) -> int:
    from accel import ModelFileError, make_classifier
    from lab.scan import Scanner, offline_detector

    with failing_as("scan", ModelFileError, ValueError):
        classifier = make_classifier("cpu", args.model)
        config = detector_config(args).model_copy(update={"min_face_px": args.min_face_px})
        results = Scanner(classifier, offline_detector(config, classifier.framing)).scan_files(args.images)
    return emit(args, results, _print_scan)


def _print_scan(results: list[dict]) -> None:
    for result in results:
        print(f"{result['image']}: {len(result['faces'])} face(s)")
        for face in result["faces"]:
            box = ", ".join(f"{v:.0f}" for v in face["box"])
            print(f"  [{box}] {face['class']} ({face['score']:.2f})")
