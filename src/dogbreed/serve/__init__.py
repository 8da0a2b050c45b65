"""The model server: SageMaker's inference contract over gunicorn + Flask.

``dogbreed-serve`` (:func:`dogbreed.serve.server.main`) starts it; :mod:`.app` holds the routes,
:mod:`.predictor` decoding and inference, :mod:`.batcher` cross-request batching and
:mod:`.config` the settings read from the environment.
"""
