"""Fill-in for Amazon Redshift: S3 event integrations and the resource policies that authorise them,
which moto 5.2.5 lacks, and the namespace ARN of a cluster, which its DescribeClusters leaves out."""
