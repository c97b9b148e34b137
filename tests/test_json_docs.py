"""docs/json.md against what the commands print: each `## \\`trainctl ...\\`` section's JSON
example and field table, and the output of that command run for real (demo sessions with
checkpoints; moto's server; the RunPod GraphQL server; Slurm; sshd). Shapes are compared, not
values: the same keys in every object, at every level, and types the table allows (null only
where its "null when" column says when). A key the docs do not list, or one they list that
is not printed, fails with its path.

Refresh the examples from real runs: JSON_DOCS_DUMP=DIR pytest tests/test_json_docs.py
writes each command's output to DIR/<command>.json instead of checking it (then cut long
lists to 3 items)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from moto_aws import aws, moto_server  # noqa: F401 - the fixtures
from runpod_server import runpod_server  # noqa: F401 - the fixture
from slurm_cluster import slurm_cluster  # noqa: F401 - the session fixture
from sshd import sshd_server  # noqa: F401 - the fixture
from ssm_double import ssm  # noqa: F401 - the fixture
from test_cli import DEMO, wait_for
from test_cli_cloud import cloud_config  # noqa: F401 - the fixture
from test_cli_runpod import home  # noqa: F401 - the fixture
from test_slurm_clusters import cluster, clusters_cli, write_config  # noqa: F401
from test_ssh_provider import ssh_env  # noqa: F401 - the fixture

from trainctl_tui.cli.main import build_parser

pytestmark = pytest.mark.timeout(240)

DOC = ROOT / "docs" / "json.md"

ONCE = "trainctl --once --json"
SESSIONS = "trainctl sessions --json"
HOSTS = "trainctl hosts --json"
METRICS = "trainctl metrics SRC --json"
CHECKPOINTS = "trainctl checkpoints SRC --json"
CHECKPOINT_INFO = "trainctl checkpoint info PATH --json"
COMPARE = "trainctl compare A B --json"
INSTANCES = "trainctl instances --json"
INSTANCE = "trainctl instance ACTION [ID] --json"
PRICES = "trainctl prices --provider P --json"
GPUS = "trainctl gpus --json"
CLUSTERS = "trainctl clusters --json"

BASES = {"string": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
         "object": (dict,)}
FREE = "object (free-form)"  # any JSON object; what is inside is not described


# -- reading the docs ------------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """One row of a field table: its type ("int", "float or string", "list of object",
    "map of int", "object (free-form)") and whether it may be null."""

    type: str
    nullable: bool

    def alternatives(self) -> list[str]:
        if self.type.startswith(("list of ", "map of ")) or self.type == FREE:
            return [self.type]
        return self.type.split(" or ")


@dataclass
class Section:
    heading: str
    example: object
    fields: dict[str, Field]  # path ("sessions[].env.*") -> its row


def element_path(path: str, container: str) -> str:
    return f"{path}[]" if container == "list" else (f"{path}.*" if path else "*")


def read_sections(text: str) -> dict[str, Section]:
    """Each `## \\`trainctl ...\\`` heading with the first ```json block and the first field
    table under it."""
    sections = {}
    for chunk in re.split(r"^## ", text, flags=re.M)[1:]:
        heading = re.match(r"`([^`]+)`", chunk)
        if not heading or not heading.group(1).startswith("trainctl "):
            continue
        block = re.search(r"^```json\n(.*?)^```", chunk, flags=re.M | re.S)
        assert block, f"{heading.group(1)}: no ```json example"
        try:
            example = json.loads(block.group(1))
        except ValueError as exc:
            raise AssertionError(f"{heading.group(1)}: its example is not JSON: {exc}") from None
        sections[heading.group(1)] = Section(heading.group(1), example, read_table(chunk))
    for section in sections.values():
        graft_references(section.fields, sections)
    return sections


def graft_references(fields: dict[str, Field], sections: dict[str, Section]) -> None:
    """A row typed `object (see trainctl ...)` holds what that section's output holds, but
    its `version`: its rows are copied under it."""
    for path, field in list(fields.items()):
        seen = re.fullmatch(r"object \(see (trainctl [^)]+)\)", field.type)
        if not seen:
            continue
        assert seen.group(1) in sections, f"{path}: no section {seen.group(1)}"
        fields[path] = Field("object", field.nullable)
        for inner, row in sections[seen.group(1)].fields.items():
            if inner != "version":
                fields[f"{path}.{inner}"] = row


def read_table(chunk: str) -> dict[str, Field]:
    """The rows of `| field | type | meaning | null when |`; a list's or map's elements get
    a row of their own (`path[]`, `path.*`) typed by what it says they hold."""
    fields: dict[str, Field] = {}
    rows = [line for line in chunk.splitlines() if line.startswith("| `")]
    assert rows, "no field table"
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == 4, f"a field row needs 4 cells: {row}"
        path, kind, _meaning, null_when = (cell.replace("`", "") for cell in cells)
        assert path not in fields, f"{path}: two rows"
        fields[path] = Field(kind, not null_when.startswith("never"))
        for container in ("list", "map"):
            if kind.startswith(f"{container} of "):
                element = kind[len(container) + 4:]  # `list of float or null`: null elements
                nullable = element.endswith(" or null")
                fields[element_path(path, container)] = Field(
                    element[:-len(" or null")] if nullable else element, nullable)
    return fields


def children(fields: dict[str, Field], path: str) -> set[str]:
    """The keys documented for the object at `path`."""
    prefix = f"{path}." if path else ""
    return {p[len(prefix):] for p in fields
            if p.startswith(prefix) and "." not in p[len(prefix):] and not p.endswith("[]")
            and p[len(prefix):] != "*"}


# -- comparing shapes ------------------------------------------------------------------------

def shape_problems(value, fields: dict[str, Field], path: str = "",
                   seen: dict[str, bool] | None = None) -> list[str]:
    """What in `value` (a command's output or an example) does not fit the table: keys
    printed but not documented and documented but not printed (with their path), wrong
    types, nulls the table does not allow. `seen` collects the paths reached, each with
    whether what it holds was shown (False: null, or an empty list or map)."""
    seen = {} if seen is None else seen
    seen[path] = value not in (None, [], {})
    name = path or "(top)"
    field = fields.get(path) if path else Field("object", False)
    if field is None:
        return [f"{name}: printed but not documented"]
    if value is None:
        return [] if field.nullable else [f"{name}: null, but its row says never null"]
    for kind in field.alternatives():
        if kind == FREE and isinstance(value, dict):
            return []
        if kind.startswith("list of ") and isinstance(value, list):
            return [problem for item in value
                    for problem in shape_problems(item, fields, f"{path}[]", seen)]
        if kind.startswith("map of ") and isinstance(value, dict):
            return [problem for item in value.values()
                    for problem in shape_problems(item, fields, element_path(path, "map"),
                                                  seen)]
        if kind == "object" and isinstance(value, dict):
            documented = children(fields, path)
            problems = [f"{join(path, key)}: printed but not documented"
                        for key in sorted(set(value) - documented)]
            problems += [f"{join(path, key)}: documented but not printed"
                         for key in sorted(documented - set(value))]
            for key in sorted(documented & set(value)):
                problems += shape_problems(value[key], fields, join(path, key), seen)
            return problems
        if kind in BASES and isinstance(value, BASES[kind]) and \
                (kind == "bool" or not isinstance(value, bool)):
            return []
    return [f"{name}: {type(value).__name__} {json.dumps(value)[:40]}, documented as "
            f"{field.type}"]


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def unreached(fields: dict[str, Field], seen: dict[str, bool]) -> list[str]:
    """Rows the example never reaches, other than those inside a list or map it shows
    empty or an object it shows null (the table says what such elements hold)."""
    hollow = [path for path, shown in seen.items() if path and not shown]
    return sorted(path for path in fields if path not in seen and not any(
        path.startswith((f"{other}[]", f"{other}.")) for other in hollow))


@pytest.fixture(scope="module")
def sections() -> dict[str, Section]:
    return read_sections(DOC.read_text())


def check_output(sections, heading: str, result) -> dict:
    """`result` (a finished `trainctl ... --json`) has the shape docs/json.md gives it."""
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    dump = os.environ.get("JSON_DOCS_DUMP")
    if dump:
        slug = re.sub(r"[^a-z]+", "-", heading.lower().replace("trainctl ", "")).strip("-")
        Path(dump, f"{slug}.json").write_text(result.stdout)
        return data  # refreshing the examples: what is printed is what they will say
    assert heading in sections, f"docs/json.md has no section {heading}"
    assert data.get("version") == 1, f"{heading}: no \"version\": 1 at the top"
    problems = shape_problems(data, sections[heading].fields)
    assert problems == [], f"{heading} prints what docs/json.md does not say:\n" + \
        "\n".join(problems)
    return data


# -- the docs themselves ---------------------------------------------------------------------

def test_every_json_output_has_a_section():
    parser = build_parser(["--help"])
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    with_json = {"--once"} | {
        name for name, sub in commands.choices.items() if name != "ls"
        and any("--json" in action.option_strings for action in sub._actions)}
    documented = {heading.split()[1] for heading in read_sections(DOC.read_text())}
    assert documented == with_json


def test_each_table_lists_exactly_the_keys_of_its_example(sections):
    assert len(sections) == 12
    problems = []
    for heading, section in sections.items():
        seen: dict[str, bool] = {}
        found = shape_problems(section.example, section.fields, seen=seen)
        found += [f"{path}: in the table, not in the example"
                  for path in unreached(section.fields, seen)]
        if section.example.get("version") != 1:
            found.append("version: not 1")
        problems += [f"{heading}: {problem}" for problem in found]
    assert problems == [], "\n".join(problems)


def test_the_shape_check_names_the_path():
    fields = read_table("| `version` | int | v | never |\n"
                        "| `runs` | list of object | r | never |\n"
                        "| `runs[].x` | list of float | x | never |\n"
                        "| `runs[].cost` | float | c | no price |\n"
                        "| `runs[].env` | map of string | e | never |\n")
    good = {"version": 1, "runs": [{"x": [1, 2.5], "cost": None, "env": {"A": "b"}}]}
    assert shape_problems(good, fields) == []
    bad = {"version": 1, "runs": [{"x": [1, "2"], "env": {"A": 3}, "new": 1}], "extra": True}
    assert shape_problems(bad, fields) == [
        "extra: printed but not documented",
        "runs[].new: printed but not documented",
        "runs[].cost: documented but not printed",
        "runs[].env.*: int 3, documented as string",
        "runs[].x[]: str \"2\", documented as float",
    ]
    assert shape_problems({"version": None, "runs": []}, fields) == [
        "version: null, but its row says never null"]


# -- the commands, run for real --------------------------------------------------------------

def launch(name: str, ckpt: Path, *extra: str) -> str:
    result = run_cli("launch", "--name", name, "--checkpoint-dir", str(ckpt),
                     "--resume-template", "--resume {checkpoint}", "--max-restarts", "0",
                     "--", sys.executable, DEMO, "--ckpt-every", "50", "--eval-every", "50",
                     "--step-time", "0.02", *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_local_outputs_match_the_docs(sections, tmp_path):
    first = launch("demo", tmp_path / "ckpt", "--steps", "5000")
    second = launch("demo-lr", tmp_path / "ckpt-lr", "--steps", "5000", "--lr", "0.05")
    failing = launch("demo-crash", tmp_path / "ckpt-crash", "--steps", "5000",
                     "--fail-at-step", "60")
    (tmp_path / "ckpt").mkdir(exist_ok=True)
    (tmp_path / "ckpt" / "latest.safetensors").symlink_to("step_999999.safetensors")
    wait_for(lambda: len(list((tmp_path / "ckpt").glob("step_*.safetensors"))) >= 3 and
             "val loss" in run_cli("logs", second).stdout, timeout=90)
    wait_for(lambda: '"failed"' in run_cli("sessions", "--json").stdout, timeout=60)

    once = check_output(sections, ONCE, run_cli("--once", "--json"))
    assert {alert["kind"] for alert in once["alerts"]} == {"failed"}
    check_output(sections, SESSIONS, run_cli("sessions", "--json"))
    check_output(sections, METRICS, run_cli("metrics", first, "--json"))
    listing = check_output(sections, CHECKPOINTS, run_cli("checkpoints", first, "--json"))
    newest = [row["path"] for row in listing["checkpoints"] if row["status"] == "ok"][-1]
    check_output(sections, CHECKPOINT_INFO, run_cli("checkpoint", "info", newest, "--json"))
    check_output(sections, COMPARE, run_cli("compare", first, second, "--json"))
    for session in (first, second):
        assert run_cli("stop", session).returncode == 0
    assert failing


def test_hosts_output_matches_the_docs(sections, ssh_env):  # noqa: F811 - the fixture
    check_output(sections, HOSTS, run_cli("hosts", "--json"))


def test_aws_outputs_match_the_docs(sections, cloud_config):  # noqa: F811 - the fixture
    created = run_cli("instance", "create", "--provider", "aws", "--template", "a10g",
                      "--name", "bert", "--json")
    instance = check_output(sections, INSTANCE, created)
    check_output(sections, INSTANCES, run_cli("instances", "--json"))
    check_output(sections, PRICES, run_cli("prices", "--provider", "aws", "--type",
                                           "g5.xlarge", "--json"))
    stopped = run_cli("instance", "stop", instance["id"], "--json")
    assert check_output(sections, INSTANCE, stopped)["id"] == instance["id"]


def test_runpod_gpus_output_matches_the_docs(sections, home, runpod_server):  # noqa: F811
    check_output(sections, GPUS, run_cli("gpus", "--provider", "runpod", "--json"))


def test_clusters_output_matches_the_docs(sections, cluster, tmp_path):  # noqa: F811
    write_config(tmp_path, hpc="local", gone="dead")
    sleep = cluster.write_script("json-docs-sleep.sh", "sleep 300\n")
    job = cluster.sbatch(sleep, "-p", "debug", "-J", "train-gpt")
    cluster.wait_state(job, {"RUNNING"})
    data = check_output(sections, CLUSTERS, clusters_cli(cluster, "--json"))
    assert [c["state"] for c in data["clusters"]] == ["unreachable", "up"]


def test_a_nan_loss_is_a_string_in_every_output(sections, tmp_path):
    """Strict JSON (no NaN token) from `--once`, `metrics` and `compare`."""
    log = tmp_path / "nan.log"
    log.write_text("step 1 loss 0.5\nstep 2 loss nan\n")
    script = tmp_path / "nan.py"
    script.write_text(f"print({log.read_text()!r}, end='')\n")
    result = run_cli("launch", "--name", "nan", "--", sys.executable, str(script))
    assert result.returncode == 0, result.stderr
    session = result.stdout.strip().splitlines()[-1]
    wait_for(lambda: '"succeeded"' in run_cli("sessions", "--json").stdout)

    def strict(text: str):
        def refuse(token):
            raise AssertionError(f"not strict JSON: {token}")
        return json.loads(text, parse_constant=refuse)

    once = run_cli("--once", "--json")
    assert strict(once.stdout)["sessions"][0]["metrics"]["loss"]["last"] == "nan"
    check_output(sections, ONCE, once)
    metrics = run_cli("metrics", session, "--json")
    assert strict(metrics.stdout)["series"]["loss"]["y"] == [0.5, "nan"]
    check_output(sections, METRICS, metrics)
    compare = run_cli("compare", session, str(log), "--json")
    assert [run["last"] for run in strict(compare.stdout)["runs"]] == ["nan", "nan"]
    check_output(sections, COMPARE, compare)
