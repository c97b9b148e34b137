"""RunPod in the runner (a runner part, runner/parts.py): when the budget guard stops a run on
a pod, the pod is stopped (or terminated, `runpod_shutdown_behavior`) through RunPod's API
with the pod's own key (runner_pod_api.py), so the spending ends. The provider sets
`runpod_pod_id` and `runpod_api_url` in the spec of a session with a budget or max hours.
Shipped in the runner's zipapp: stdlib only, Python 3.7+."""

from __future__ import annotations

from ...runner.parts import RunnerPart
from ...runner.spec import SpecError
from .runner_pod_api import ACTIONS, DEFAULT_API_URL, PodAPIError, end_pod, pod_api_key


class RunPodRunnerPart(RunnerPart):
    SPEC_DEFAULTS = {
        "runpod_pod_id": None,
        "runpod_api_url": None,
        "runpod_shutdown_behavior": "stop",
    }

    @classmethod
    def check_spec(cls, spec: dict, path: str) -> None:
        if spec["runpod_shutdown_behavior"] not in ACTIONS:
            raise SpecError(f"{path}: 'runpod_shutdown_behavior' must be 'stop' or "
                            f"'terminate' (got {spec['runpod_shutdown_behavior']!r})")
        pod = spec["runpod_pod_id"]
        if pod is not None and (not isinstance(pod, str) or not pod.strip()):
            raise SpecError(f"{path}: 'runpod_pod_id' must be a pod id")

    @classmethod
    def enabled(cls, spec: dict) -> bool:
        return bool(spec.get("runpod_pod_id"))

    def stop_machine(self):
        spec = self.supervisor.spec
        pod, action = spec["runpod_pod_id"], spec["runpod_shutdown_behavior"]
        url = spec["runpod_api_url"] or DEFAULT_API_URL
        record = {"action": action, "machine": f"pod {pod}", "via": "RunPod API",
                  "command": None, "exit_code": None, "error": None}
        key, where = pod_api_key()
        if key is None:
            record["error"] = f"no RunPod API key on the pod (looked in {where})"
            return record
        try:
            record["state"] = end_pod(url, key, pod, action)
        except PodAPIError as exc:
            record["error"] = f"{'podTerminate' if action == 'terminate' else 'podStop'} " \
                              f"at {url}: {exc}"
        return record


PART = RunPodRunnerPart
