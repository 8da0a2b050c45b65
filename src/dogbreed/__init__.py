"""dogbreed: fine-tune and serve a ResNet18 dog-breed classifier under SageMaker's contracts."""

__version__ = "0.1.0"
