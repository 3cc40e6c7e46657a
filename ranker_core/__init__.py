"""The shared contracts at the bottom of the import graph: it imports nothing else from the project.

* :mod:`ranker_core.settings`: how every command reads its settings (flags > environment > file > defaults,
  one boolean parser, unknown keys refused);
* :mod:`ranker_core.step_configs`: the trainer's and the GBDT baseline's settings (no TensorFlow, no LightGBM);
* :mod:`ranker_core.schema`: tasks, reserved example keys, the feature spec;
* :mod:`ranker_core.targets`: the training and evaluation targets (each task and graded engagement);
* :mod:`ranker_core.serving`: the prediction server's routes, port and model name;
* :mod:`ranker_core.cli_support`: user errors and deprecation warnings shared by every subcommand;
* :mod:`ranker_core.runtime`: the TensorFlow environment every process that may load it sets first.
"""
