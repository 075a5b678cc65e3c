"""Training of the ``demo`` preset (tools/train_demo.py): data, stages, figures. Not part of svsr."""
