"""The training job: toolkit entry -> ranks (torchrun) -> job -> engine, with its data path.

``python -m dogbreed.train`` runs one rank (:mod:`.job`); :mod:`.toolkit` is the sagemaker-training
toolkit's entry (``SAGEMAKER_TRAINING_MODULE``).
"""
