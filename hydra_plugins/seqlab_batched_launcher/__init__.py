"""seqlab's Hydra launcher ``hydra/launcher=batched``: a sweep's same-shaped jobs trained as populations.

Hydra finds launchers in the ``hydra_plugins`` namespace package (this directory, shipped in seqlab's
wheel); the launcher's config is conf/hydra/launcher/batched.yaml.
"""
