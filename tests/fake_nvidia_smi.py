#!/usr/bin/env python3
"""A stand-in for nvidia-smi, installed as `nvidia-smi` in a temp bin dir on PATH (see
install_fake_nvidia_smi in tests/gpu_helpers.py). It answers exactly the query trainctl's
runner makes, printing what NVIDIA's nvidia-smi prints for it with
--format=csv,noheader,nounits: one line per GPU, values separated by ", ", unavailable
values as [N/A] or [Not Supported]. What it prints comes from a JSON file the test writes
(FAKE_NVIDIA_SMI_STATE), so a test can make GPUs busy or idle while a runner samples:

  {"gpus": [[index, uuid, name, util, mem_used, mem_total, power, temp], ...],
   "exit": 0, "output": "raw text instead of the lines", "hang": false}

Each call appends one line to FAKE_NVIDIA_SMI_STATE + ".calls"."""

import json
import os
import sys
import time

EXPECTED = ["--query-gpu=index,uuid,name,utilization.gpu,memory.used,memory.total,"
            "power.draw,temperature.gpu", "--format=csv,noheader,nounits"]


def main() -> int:
    state_path = os.environ["FAKE_NVIDIA_SMI_STATE"]
    with open(state_path + ".calls", "a") as fh:
        fh.write(" ".join(sys.argv[1:]) + "\n")
    if sys.argv[1:] != EXPECTED:
        # nvidia-smi's answer to a field it does not know, as it prints it.
        sys.stdout.write("Invalid combination of input arguments. "
                         "Please run 'nvidia-smi -h' for help.\n")
        return 2
    with open(state_path) as fh:
        state = json.load(fh)
    if state.get("hang"):
        signal_proof_sleep()
    if "output" in state:
        sys.stdout.write(state["output"])
    else:
        for gpu in state.get("gpus", []):
            sys.stdout.write(", ".join(str(value) for value in gpu) + "\n")
    return int(state.get("exit", 0))


def signal_proof_sleep() -> None:
    """A hung nvidia-smi: ignores SIGTERM and SIGINT (only SIGKILL ends it)."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    sys.exit(main())
