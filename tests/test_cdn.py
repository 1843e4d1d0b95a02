"""CDN area against moto: distributions with origin access control, idempotent, drift repaired with
the current ETag, bucket policies that admit only their distribution, dry run."""

from __future__ import annotations

import json

from deploy.areas import cdn
from deploy.stage import Stage
from tests.helpers import changed, converge, operations

CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


def policy(stage: Stage, bucket: str) -> dict:
    return json.loads(stage.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])


def config_of(stage: Stage, which: str) -> tuple[str, dict, str]:
    found = cdn.find_summary(stage, which)
    assert found is not None
    got = stage.client("cloudfront").get_distribution_config(Id=found["Id"])
    return found["Id"], got["DistributionConfig"], got["ETag"]


def test_up_makes_both_distributions_in_one_run_and_a_second_run_makes_no_call(make_stage, call_log) -> None:
    stage = make_stage("dev", log=call_log)

    first = converge(stage, "kms", "s3", "cdn")

    assert "CreateDistributionWithTags" in operations(first.resources)
    for which in cdn.WHICH:
        _, config, _ = config_of(stage, which)
        origin = config["Origins"]["Items"][0]
        assert origin["OriginAccessControlId"] == cdn.read_oac_id(stage)
        assert origin["DomainName"] == f"{cdn.bucket_of(stage, which)}.s3.us-east-1.amazonaws.com"
        assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
        assert config["DefaultCacheBehavior"]["Compress"] is True
        assert config["PriceClass"] == stage.config.cdn.price_class
        arn = cdn.distribution_arn(stage, which)
        tags = stage.client("cloudfront").list_tags_for_resource(Resource=arn)["Tags"]["Items"]
        assert {"Key": "Stage", "Value": "dev"} in tags
    call_log.clear()

    second = converge(stage, "kms", "s3", "cdn")

    assert changed(second.resources) == []
    assert call_log.mutating == []


def test_bucket_policy_admits_only_the_stages_distribution(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "kms", "s3", "cdn")

    for which in cdn.WHICH:
        bucket = cdn.bucket_of(stage, which)
        grants = [s for s in policy(stage, bucket)["Statement"] if s["Effect"] == "Allow"]
        assert grants == [cdn.cloudfront_statement(stage, which, cdn.distribution_arn(stage, which))]
        assert grants[0]["Principal"] == {"Service": "cloudfront.amazonaws.com"}
        assert grants[0]["Action"] == "s3:GetObject"


def test_stages_sharing_the_buckets_each_read_their_own_folder(make_stage) -> None:
    dev, staging = make_stage("dev"), make_stage("stage")
    converge(dev, "kms", "s3", "cdn")
    converge(staging, "kms", "s3", "cdn")

    for which, folder in (("statics", "{stage}/static/*"), ("media", "{stage}/*")):
        bucket = cdn.bucket_of(dev, which)
        grants = {s["Sid"]: s["Resource"] for s in policy(dev, bucket)["Statement"] if s["Effect"] == "Allow"}
        assert grants == {
            cdn.statement_sid(stage): f"arn:aws:s3:::{bucket}/{folder.format(stage=stage.name)}"
            for stage in (dev, staging)
        }


def test_statement_removed_by_hand_is_put_back(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "kms", "s3", "cdn")
    bucket = cdn.bucket_of(stage, "statics")
    document = policy(stage, bucket)
    document["Statement"] = [s for s in document["Statement"] if s["Sid"] != cdn.statement_sid(stage)]
    stage.client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(document))

    repaired = converge(stage, "cdn")

    assert changed(repaired.resources) == [f"{bucket} for statics"]
    assert cdn.statement_sid(stage) in {s["Sid"] for s in policy(stage, bucket)["Statement"]}


def test_drift_is_repaired_with_the_current_etag(make_stage) -> None:
    stage = make_stage("dev")
    converge(stage, "kms", "s3", "cdn")
    distribution, config, etag = config_of(stage, "statics")
    config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] = "allow-all"
    config["PriceClass"] = "PriceClass_All"
    stage.client("cloudfront").update_distribution(Id=distribution, IfMatch=etag, DistributionConfig=config)
    _, _, drifted_etag = config_of(stage, "statics")

    repaired = converge(stage, "cdn")

    update = next(s for r in repaired.resources for s in r.calls if s.operation == "UpdateDistribution")
    assert update.params["IfMatch"] == drifted_etag
    assert "PriceClass" in update.reason and "DefaultCacheBehavior" in update.reason
    _, config, _ = config_of(stage, "statics")
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert config["PriceClass"] == stage.config.cdn.price_class
    assert changed(converge(stage, "cdn").resources) == []


def test_aliases_and_certificate_from_config(make_stage, config_copy) -> None:
    text = f"cdn:\n  certificate_arn: {CERTIFICATE}\n  aliases:\n    statics: static.example.com\n"
    stage = make_stage("dev", config_dir=config_copy("dev", text))

    converge(stage, "kms", "s3", "cdn")

    _, config, _ = config_of(stage, "statics")
    assert config["Aliases"]["Items"] == ["static.example.com"]
    assert config["ViewerCertificate"]["ACMCertificateArn"] == CERTIFICATE
    assert config["ViewerCertificate"]["SSLSupportMethod"] == "sni-only"
    assert changed(converge(stage, "cdn").resources) == []


def test_dry_run_makes_no_mutating_call(make_stage, call_log) -> None:
    converge(make_stage("dev"), "kms", "s3")
    preview = converge(make_stage("dev", read_only=True, log=call_log), "cdn", dry_run=True)

    assert sorted(operations(preview.resources)) == sorted(
        ["CreateOriginAccessControl"] + ["CreateDistributionWithTags", "PutBucketPolicy"] * 2
    )
    assert call_log.mutating == []
    assert cdn.find_summary(make_stage("dev"), "statics") is None


def test_an_alias_waits_for_the_acm_certificate_then_gets_it(make_stage, config_copy) -> None:
    """With no cdn.certificate_arn, an alias covered by acm.domains is served with the acm area's
    certificate once it is issued; before that the distribution goes without the alias (CloudFront
    refuses an alias without a certificate)."""
    text = (
        "waits: {poll_seconds: 0.05, timeout_seconds: 10}\n"
        "dns:\n  hosted_zone: iotile.cloud\n"
        "cdn:\n  aliases:\n    statics: static.dev.iotile.cloud\n"
    )
    stage = make_stage("dev", config_dir=config_copy("dev", text))
    stage.client("route53").create_hosted_zone(Name="iotile.cloud", CallerReference="test")
    converge(stage, "s3")
    first = converge(stage, "cdn")
    statics = next(r for r in first.resources if r.kind == "distribution" and r.name.endswith(":statics"))
    create = statics.calls[0].params["DistributionConfigWithTags"]["DistributionConfig"]
    assert create["Aliases"] == {"Quantity": 0}
    assert create["ViewerCertificate"] == {"CloudFrontDefaultCertificate": True}

    converge(stage, "acm")
    second = converge(stage, "cdn")

    statics = next(r for r in second.resources if r.kind == "distribution" and r.name.endswith(":statics"))
    (update,) = [c for c in statics.calls if c.operation == "UpdateDistribution"]
    config = update.params["DistributionConfig"]
    assert config["Aliases"] == {"Quantity": 1, "Items": ["static.dev.iotile.cloud"]}
    from deploy.areas import acm

    assert config["ViewerCertificate"]["ACMCertificateArn"] == acm.certificate_arn(stage)
    assert changed(converge(stage, "cdn").resources) == []
