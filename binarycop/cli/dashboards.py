"""``dashboards push`` and ``dashboards render``: the Grafana dashboards."""

from __future__ import annotations

import os
from pathlib import Path

from binarycop.cli.output import CommandError, emit
from binarycop.grafana import DATASOURCE_UID


def register(commands) -> None:
    dashboards = commands.add_parser("dashboards", help="Grafana dashboards")
    actions = dashboards.add_subparsers(required=True, metavar="ACTION")
    _add_push(actions)
    _add_render(actions)


def _add_push(actions) -> None:
    push = actions.add_parser("push", help="create or update the dashboards through Grafana's API")
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. https://grafana.example:3000")
    push.add_argument(
        "--token", default=os.environ.get("GRAFANA_TOKEN"), help="service account token (default: $GRAFANA_TOKEN)"
    )
    push.add_argument(
        "--datasource-uid",
        default=DATASOURCE_UID,
        metavar="UID",
        help=f"uid of the Prometheus datasource the dashboards read (default: {DATASOURCE_UID})",
    )
    push.add_argument(
        "--prometheus-url", metavar="URL", help="create that datasource, pointing at this Prometheus, if absent"
    )
    push.add_argument("--json", action="store_true", help="print the results as one JSON document")
    push.set_defaults(handler=_push)


def _push(args) -> int:
    from binarycop.grafana import PushError, push_dashboards

    try:
        results = push_dashboards(args.url, args.token, args.prometheus_url, datasource_uid=args.datasource_uid)
    except PushError as error:
        raise CommandError(f"dashboards push failed: {error}", status=1) from None
    return emit(args, results, _print_pushed)


def _print_pushed(results: list[dict]) -> None:
    for result in results:
        print(f"{result['uid']}: {'imported' if result['imported'] else 'not imported'} {result['url']}")


def _add_render(actions) -> None:
    render = actions.add_parser("render", help="draw each dashboard as a PNG from a real Prometheus")
    render.add_argument("--prometheus", required=True, help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    render.add_argument("--out", type=Path, required=True, help="folder for <dashboard uid>.png")
    render.add_argument("--minutes", type=float, default=10, help="time range drawn")
    render.set_defaults(handler=_render)


def _render(args) -> int:
    from binarycop.dashboard_render import render_all
    from binarycop.grafana import load_dashboards

    for path, drawn in render_all(load_dashboards(), args.prometheus, args.out, args.minutes).items():
        empty = [title for title, count in drawn.items() if not count]
        print(f"{path}: {len(drawn)} panels" + (f", no data in: {', '.join(empty)}" if empty else ""))
    return 0
