"""Shell tab completion for ``seqlab`` and ``python -m seqlab`` (and ``python -m seqlab.probe``).

Hydra's own bash script (``-sc install=bash``) completes only ``python FILE.py`` and commands on
PATH that it registered, and its query parses ``python -m seqlab task=`` as the app ``-m``, so
it completes nothing for a module. seqlab prints its own script instead: it registers the
``seqlab`` command and ``python``/``python3`` (for ``-m seqlab``; any other python command line
falls back to file names, as Hydra's does), and before Hydra answers a query the command line is
rewritten to the ``seqlab ARGS`` form Hydra parses. The answers are Hydra's: config groups and
their options, config keys, values.

    eval "$(seqlab -sc install=bash)"            # or: eval "$(python -m seqlab -sc install=bash)"
    seqlab mo<TAB>  ->  model=  model.        python -m seqlab model=l<TAB>  ->  model=lru model=lstm
"""
from __future__ import annotations

import os
import re
import sys

BASH = r"""# seqlab tab completion (bash; zsh after `autoload -Uz bashcompinit && bashcompinit`)
_seqlab_completion()
{
    local words=($COMP_LINE) helper
    if [[ "${words[0]}" == seqlab ]]; then
        helper="${words[0]}"
    elif [[ "${words[0]}" == *python* && "${words[1]}" == -m && "${words[2]}" == seqlab* ]]; then
        helper="${words[0]} -m ${words[2]}"
    else
        return 0  # another python command line: file names (complete -o default)
    fi
    local choices
    choices=$(COMP_POINT=$COMP_POINT COMP_LINE=$COMP_LINE $helper -sc query=bash 2>/dev/null)
    COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "${COMP_WORDS[COMP_CWORD]}"))
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
complete -o nospace -o default -F _seqlab_completion seqlab python python3
"""

_MODULE = re.compile(r"^\s*\S*python[\d.]*\s+-m\s+\S+\s*")


def handle(argv: list[str]) -> None:
    """``-sc install=bash|zsh``: print seqlab's script and exit 0. ``-sc query=...``: rewrite
    COMP_LINE/COMP_POINT to the ``seqlab ARGS`` form Hydra's query parses, then let Hydra answer."""
    value = _completion_arg(argv)
    if value is None:
        return
    if value in ("install=bash", "install=zsh"):
        sys.stdout.write(BASH)
        raise SystemExit(0)
    if value.startswith("uninstall=") and value.split("=")[1] in ("bash", "zsh"):
        sys.stdout.write("complete -r seqlab python python3 2> /dev/null\n")
        raise SystemExit(0)
    if value not in ("query=bash", "query=zsh", "query=fish"):  # Hydra raises a ValueError (a traceback) otherwise
        print(f"seqlab: error: -sc {value}: not a shell-completion command; use -sc install=bash (or zsh), "
              f"-sc uninstall=bash, or -sc query=bash", file=sys.stderr)
        raise SystemExit(2)
    if value.startswith("query="):
        line = os.environ.get("COMP_LINE", "")
        match = _MODULE.match(line)
        if match:
            point = int(os.environ.get("COMP_POINT", len(line)))
            os.environ["COMP_LINE"] = "seqlab " + line[match.end():]
            os.environ["COMP_POINT"] = str(max(point - match.end(), 0) + len("seqlab "))


def _completion_arg(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg in ("-sc", "--shell-completion"):
            return argv[i + 1] if i + 1 < len(argv) else None
        if arg.startswith("--shell-completion="):
            return arg.split("=", 1)[1]
    return None
