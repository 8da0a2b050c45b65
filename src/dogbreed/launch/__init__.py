"""Drive the dogbreed images on Amazon SageMaker: tune, train, deploy, invoke, transform, report.

Every module builds the exact SageMaker API request as a plain dict (the shapes of boto3's
``sagemaker`` client) and sends it through one client. That client is boto3's for AWS, or the
``sagemaker-core`` SDK's local-mode client (``sagemaker.core.local``), which runs the very same
requests against our images with ``docker compose`` and ``file://`` data, offline.
"""
