"""The tags trainctl puts on the EC2 instances it creates (shared by the cloud, the provider
and the declaration, which must not import boto3)."""

MANAGED_TAG = "trainctl:managed"
SESSION_TAG = "trainctl:session"
TEMPLATE_TAG = "trainctl:template"  # the template an instance was created from
