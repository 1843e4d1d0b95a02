"""Facts of the AWS partitions a region belongs to: the `arn:<partition>:` prefix and the domain of
its service endpoints. Standard library only: the CLI imports it on start-up."""

from __future__ import annotations


def partition(region: str) -> str:
    """`aws`, `aws-cn` or `aws-us-gov`: what ARNs in `region` start with after `arn:`."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def dns_suffix(region: str) -> str:
    """The domain of the region's service endpoints, as kms:ViaService names them."""
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
