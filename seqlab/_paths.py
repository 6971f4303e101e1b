"""Where the configs are (no heavy imports: the shell completion and --help read this).

The wheel ships conf/ as seqlab/conf; a source checkout (editable install) has it beside the package.
"""
from pathlib import Path

from omegaconf import OmegaConf

_HERE = Path(__file__).resolve().parent
CONF_DIR = _HERE / "conf" if (_HERE / "conf" / "config.yaml").exists() else _HERE.parent / "conf"

# `${seqlab.or:a,b}`: a unless it is null (e.g. hydra.run.dir = the `resume` directory, else a new one).
OmegaConf.register_new_resolver("seqlab.or", lambda a, b: b if a is None else a, replace=True)
# The lr x seed protocol's sweep axes (conf/protocol/lr_seeds.yaml; seqlab.protocol).
from seqlab import protocol as _protocol  # noqa: E402  (standard library only)

OmegaConf.register_new_resolver("seqlab.lr_axis", _protocol.lr_axis, replace=True)
OmegaConf.register_new_resolver("seqlab.seed_axis", _protocol.seed_axis, replace=True)
