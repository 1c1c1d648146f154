"""Depth estimation layer: one interface, several models and runtimes.

* :mod:`interface`: ``DepthInput``, ``DepthOutput``, ``DepthEstimator``, ``make_estimator``.
* :mod:`mono_radar_net`, :mod:`stereo_net`: the networks; :mod:`layers` their blocks.
* :mod:`sgbm`: OpenCV StereoSGBM baseline; :mod:`radar_encoding`: radar -> image channels.
* :mod:`runtime`: torch / onnxruntime / TensorRT backends and the network estimators.
* :mod:`model_io`: safetensors weights + JSON model cards (``weights/``).
* :mod:`data`, :mod:`losses`, :mod:`train`: training on `depth-nodes sim dataset` output.
* :mod:`metrics`, :mod:`evaluate`, :mod:`commands`: evaluation, benchmarks and CLI.

Importing this package does not import torch; the submodules that need it do.
"""
