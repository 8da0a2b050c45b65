"""On-demand prices of SageMaker real-time inference instances, for ``dogbreed endpoints``.

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
"""

from __future__ import annotations

PRICE_REGION = "us-east-1"
HOURLY_USD = {
    "ml.m5.large": 0.115,
    "ml.c5.large": 0.102,
    "ml.c5.xlarge": 0.204,
}


def hourly_price(instance_type: str, region: str) -> float | None:
    """USD per hour of one real-time inference instance; None where the table does not know it."""
    if region != PRICE_REGION:
        return None
    return HOURLY_USD.get(instance_type)
