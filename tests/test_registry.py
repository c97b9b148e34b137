"""The registry of backends and what they declare (issue 14): one table, lazy imports, one
parser of provider strings, machine options merged across clouds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from trainctl_tui.app.machines import (
    launch_request_machine,
    machine_options,
    new_machine_kind,
    request_from_flags,
)
from trainctl_tui.backends.registry import cloud_names, declarations, get_provider, guess_cloud
from trainctl_tui.core.errors import TrainctlError
from trainctl_tui.core.placement import Placement


def test_placement_parses_kind_and_target_with_one_node():
    assert Placement.parse("local") == Placement("local")
    ssh = Placement.parse("ssh:gpu-box")
    assert (ssh.kind, ssh.target, ssh.nodes) == ("ssh", "gpu-box", ("gpu-box",))
    assert str(ssh) == "ssh:gpu-box" and str(Placement.parse("runpod")) == "runpod"
    assert Placement.parse("aws:i-0abc:x").target == "i-0abc:x"  # only the first colon splits


def test_listing_the_declarations_imports_no_sdk():
    probe = ("import sys\n"
             "from trainctl_tui.app.machines import machine_options, form_fields\n"
             "from trainctl_tui.backends.registry import declarations, cloud_names\n"
             "[d.name for d in declarations()]; cloud_names(); machine_options('create')\n"
             "form_fields('launch')\n"
             "heavy = {'boto3', 'botocore', 'runpod', 'pydantic', 'textual', 'asyncio'}\n"
             "print(sorted(heavy & set(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_clouds_and_instance_ids_come_from_the_declarations():
    assert [d.name for d in declarations()] == ["local", "ssh", "aws", "runpod", "slurm"]
    assert cloud_names() == ["aws", "runpod"]
    assert guess_cloud("i-0123456789abcdef0") == "aws"
    assert guess_cloud("abc123") == "runpod"
    assert guess_cloud("not-an-id!") is None
    with pytest.raises(TrainctlError, match="ssh needs a host"):
        get_provider("ssh")
    with pytest.raises(TrainctlError, match="unknown provider 'nowhere:x'"):
        get_provider("nowhere:x")


def test_a_flag_two_clouds_share_is_one_argument_with_both_helps():
    options = {option.flag: help_text for option, help_text in machine_options("create")}
    assert options["--disk-gb"] == "aws: root volume; runpod: pod volume (/workspace)"
    assert options["--gpu"] == "runpod: GPU type id, e.g. 'NVIDIA A40'"
    assert "--s3-prefix" not in options  # a launch setting only
    assert "--s3-prefix" in {option.flag for option, _ in machine_options("launch")}


def test_backend_options_go_into_the_request_by_their_keys():
    request = request_from_flags("runpod", {"gpu": "NVIDIA A40", "bid": 0.3,
                                            "container_disk_gb": 33}, spot=True)
    assert (request.type, request.max_price, request.spot) == ("NVIDIA A40", 0.3, True)
    assert request.options == {"container_disk_gb": 33}
    with pytest.raises(TrainctlError, match="--bid is for spot pods: add --spot"):
        request_from_flags("runpod", {"bid": 0.3})


def test_which_providers_create_a_machine_first():
    assert new_machine_kind("aws") == "aws" and new_machine_kind("aws:a10g") == "aws"
    assert new_machine_kind("aws:i-0abc") is None
    assert new_machine_kind("runpod") == "runpod" and new_machine_kind("runpod:pod1") is None
    assert new_machine_kind("local") is None and new_machine_kind("ssh:box") is None
    assert launch_request_machine("aws:a10g", None).template == "a10g"
