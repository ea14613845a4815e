"""tumorlens: brain MRI tumour classification, light attention modules, ensembles and
Grad-CAM + GrabCut weak segmentation — the helper library behind the paper's notebooks.

Modules (one paper concept each): config, paths, data, audit, phantoms, backbones, blocks, vit,
models, train, explain, segment, ensemble, stats, report, cli.
"""

import os as _os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) buries real messages.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
