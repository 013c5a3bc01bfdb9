"""Sub-commands of `voxsurv`: one module per command, each with `register(subparsers)`.

A command module sets `handler=` on its parser via `set_defaults`; the handler returns the exit
code. Keep imports of torch/SimpleITK/PyRadiomics inside the handler.
"""
