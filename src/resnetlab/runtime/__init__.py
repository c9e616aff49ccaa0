"""The runtime layer, between models/data and train/infer/analysis: how a model runs
(:mod:`~resnetlab.runtime.execution`, :mod:`~resnetlab.runtime.group`), the run config and
its recipes (:mod:`~resnetlab.runtime.config`), the typed training checkpoint
(:mod:`~resnetlab.runtime.checkpoint`), the run folder (:mod:`~resnetlab.runtime.folder_layout`),
a config's data (:mod:`~resnetlab.runtime.configured_data`), one evaluation pass
(:mod:`~resnetlab.runtime.evaluate`) and the counting metrics
(:mod:`~resnetlab.runtime.metrics`)."""
