"""Serving on SageMaker: deploy (real-time, serverless, async), invoke, transform, list, clean up."""
