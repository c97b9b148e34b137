"""RunPod as the front ends see it, without the runpod SDK: pods by GPU type, their flags and
form fields, the launch place, and whether an API key is set up."""

from __future__ import annotations

import os

from ...core.errors import TrainctlError
from ...core.options import CREATE, Option, Place
from ..declaration import Declaration


class RunPodDeclaration(Declaration):
    name = "runpod"
    cloud = "trainctl_tui.backends.runpod.cloud:RunPodCloud"
    instance_kind = "pod"
    rents_by_gpu = True
    # The pod API (runpod SDK, GraphQL) makes pods with no network between them; RunPod's
    # Instant Clusters are not in it.
    no_nodes_because = "RunPod pods cannot reach each other through its pod API"
    options = (
        Option("type", "--gpu", help="runpod: GPU type id, e.g. 'NVIDIA A40'", field="gpu",
               label="GPU type", select="prices", required="choose a GPU type"),
        Option("gpu_count", "--gpu-count", type="int", default=1, minimum=1,
               help="runpod: GPUs (default 1)", field="gpu-count", label="GPU count",
               value="1", forms=(CREATE,), noun="GPU count"),
        Option("max_price", "--bid", type="float", metavar="USD",
               help="runpod spot: bid per GPU per hour (default: the current minimum)",
               launch_help="runpod spot: bid per GPU"),
        Option("image", "--image", help="runpod: container image"),
        Option("disk_gb", "--disk-gb", type="int", metavar="GB",
               help="runpod: pod volume (/workspace)", launch_help="runpod: pod volume"),
        Option("container_disk_gb", "--container-disk-gb", type="int", metavar="GB",
               help="runpod: the container's own disk", field="container-disk",
               label="Container GB", placeholder="(config default)", after="disk",
               noun="container disk"),
    )
    foreign_options = (
        (("type", "template", "max_price"),
         "--type, --template and --max-price are for aws; runpod takes --gpu and --bid"),
    )

    def configured(self, config) -> bool:
        if os.environ.get("RUNPOD_API_KEY") or config.runpod.api_key:
            return True
        from .api import find_api_key  # reads MCP client files; the SDK stays unimported

        try:
            return find_api_key(config) is not None
        except TrainctlError:
            return False

    def owns_instance(self, instance_id: str) -> bool:
        return instance_id.isalnum()  # pod ids are letters and digits

    def creates_machine(self, placement) -> bool:
        return not placement.target  # "runpod" creates a pod; "runpod:POD" runs on one

    def check(self, request, *, form: bool) -> None:
        if request.max_price is not None and not request.spot:
            raise TrainctlError("a bid is for spot pods: tick Spot, or clear the price" if form
                                else "--bid is for spot pods: add --spot")

    def launch_places(self, config, rents: bool) -> list[Place]:
        if not rents:
            return []
        return [Place(self.name, f"a new pod ({config.runpod.cloud_type.lower()} cloud), "
                                 "trained over ssh")]

