"""``python -m seqlab.report``: see seqlab.report.cli."""
from seqlab.report.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
