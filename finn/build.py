"""FINN build of the BinaryCoP accelerators for the Pynq-Z1 (xc7z020, 100 MHz).

Runs inside FINN's own docker image, from a FINN checkout:

    ./run-docker.sh build_custom /path/to/binarycop/finn

It builds every network whose QONNX export sits in ``models/`` (``binarycop export --model n-cnv
--out finn/models/n-cnv.onnx``), with the folding in ``folding/<network>.json``, and writes
``output_<network>_Pynq-Z1/``: ``bitfile/finn-accel.bit`` + ``.hwh``, ``driver/`` (FINN's PYNQ
driver), ``report/`` (estimate reports: cycles and resources per layer), ``deploy/`` (bitfile and
driver together, to copy to the board). Set ``BINARYCOP_NETWORKS=n-cnv`` to build one network only.
"""

import json
import os
from pathlib import Path

import finn.builder.build_dataflow as build
import finn.builder.build_dataflow_config as build_cfg

HERE = Path(__file__).resolve().parent
NETWORKS = ("n-cnv", "cnv", "u-cnv")
BOARD = "Pynq-Z1"
FPGA_PART = "xc7z020clg400-1"
CLOCK_NS = 10.0  # 100 MHz, as in the paper


def clean_folding(network: str) -> str:
    """The folding without its ``_provenance`` note (FINN warns about keys that name no node)."""
    config = json.loads((HERE / "folding" / f"{network}.json").read_text())
    config = {key: value for key, value in config.items() if not key.startswith("_")}
    path = HERE / f"output_{network}_{BOARD}.folding.json"
    path.write_text(json.dumps(config, indent=2))
    return str(path)


def build_network(network: str) -> None:
    config = build_cfg.DataflowBuildConfig(
        output_dir=str(HERE / f"output_{network}_{BOARD}"),
        folding_config_file=clean_folding(network),
        synth_clk_period_ns=CLOCK_NS,
        board=BOARD,
        fpga_part=FPGA_PART,
        shell_flow_type=build_cfg.ShellFlowType.VIVADO_ZYNQ,
        generate_outputs=[
            build_cfg.DataflowOutputType.ESTIMATE_REPORTS,
            build_cfg.DataflowOutputType.BITFILE,
            build_cfg.DataflowOutputType.PYNQ_DRIVER,
            build_cfg.DataflowOutputType.DEPLOYMENT_PACKAGE,
        ],
        save_intermediate_models=True,
    )
    build.build_dataflow_cfg(str(HERE / "models" / f"{network}.onnx"), config)


def main() -> None:
    wanted = os.environ.get("BINARYCOP_NETWORKS", ",".join(NETWORKS)).split(",")
    exported = [network for network in wanted if (HERE / "models" / f"{network}.onnx").is_file()]
    if not exported:
        raise SystemExit(f"no exported model in {HERE / 'models'}; run `binarycop export` first (see README.md)")
    for network in exported:
        build_network(network)


if __name__ == "__main__":
    main()
