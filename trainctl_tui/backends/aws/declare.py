"""AWS as the front ends see it, without boto3: EC2 instances from [aws.templates.NAME], their
flags and form fields, the launch places (one per template), and a shell through SSM."""

from __future__ import annotations

import os
from pathlib import Path

from ...core.options import CREATE, LAUNCH, Option, Place
from ..declaration import Declaration

# Where boto3 finds credentials or settings besides ~/.aws.
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL",
                  "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE")


class AWSDeclaration(Declaration):
    name = "aws"
    cloud = "trainctl_tui.backends.aws.cloud:AWSCloud"
    cloud_label = "aws (EC2)"
    checkpoint_schemes = ("s3://",)
    checkpoint_store = "trainctl_tui.backends.aws.s3_checkpoints"
    needs_target = ("aws needs an instance: --provider aws:i-0123456789abcdef0 (see "
                    "trainctl instances)")
    options = (
        Option("template", "--template", help="aws: the [aws.templates.NAME] to use",
               field="template", label="Template", forms=(CREATE,), select="config"),
        Option("type", "--type", help="aws: instance type, e.g. g5.xlarge", field="type",
               label="Instance type", placeholder="(the template's, e.g. g5.xlarge)"),
        Option("max_price", "--max-price", type="float", metavar="USD",
               help="aws spot: the most to pay per hour", launch_help="aws spot: $/h cap"),
        Option("image", "--image", help="aws: AMI id or name"),
        Option("s3_prefix", "--s3-prefix", metavar="s3://BUCKET/PREFIX", fills="run",
               help="aws: sync checkpoints to PREFIX/<session>/checkpoints/",
               commands=(LAUNCH,), forms=(LAUNCH,), field="s3", label="S3 prefix",
               placeholder="(the template's; s3://bucket/prefix)", after="image"),
        Option("disk_gb", "--disk-gb", type="int", metavar="GB", help="aws: root volume"),
        Option("nodes", "--nodes", help="aws: instances of a multi-node run, made from the "
               "template in one cluster placement group (--provider aws or aws:TEMPLATE)",
               metavar="N|MIN:MAX", fills="spec", commands=(LAUNCH,), forms=()),
    )
    foreign_options = (
        (("gpu", "bid"), "--gpu and --bid are for runpod; aws takes --type and --max-price"),
        (("container_disk_gb",), "--container-disk-gb is for runpod; aws takes --disk-gb"),
    )

    def configured(self, config) -> bool:
        """Credentials or settings for AWS exist somewhere boto3 would look."""
        if any(os.environ.get(name) for name in CREDENTIAL_ENV):
            return True
        aws = config.aws
        if aws.profile or aws.region or aws.templates:
            return True
        home = Path.home() / ".aws"
        return (home / "credentials").exists() or (home / "config").exists()

    def owns_instance(self, instance_id: str) -> bool:
        return instance_id.startswith("i-")  # EC2 ids look like i-0123...

    def creates_machine(self, placement) -> bool:
        """"aws" and "aws:TEMPLATE" create an instance; "aws:i-..." runs on one."""
        return not self.owns_instance(placement.target)

    def machine_request(self, placement, request):
        request.template = request.template or placement.target or None
        return request

    def choices(self, config, key: str) -> list[tuple[str, str]]:
        templates = sorted(config.aws.templates)
        return [(name, name) for name in templates] or [("default", "")]

    def launch_places(self, config, rents: bool) -> list[Place]:
        if not rents:
            return []
        templates = config.aws.templates
        default = templates.get("default")
        places = [Place(self.name, "a new EC2 instance from the default template, trained "
                        "through SSM", spot=bool(default and default.spot))]
        for name, template in sorted(templates.items()):
            if name != "default":
                market = "spot" if template.spot else "on-demand"
                places.append(Place(f"{self.name}:{name}", f"a new {template.instance_type} "
                                    f"{market} instance (template {name})", spot=template.spot))
        return places

    def shell_command(self, service, instance, has) -> list[str]:
        from .provider import aws_shell

        return aws_shell(service, instance, has=has)

