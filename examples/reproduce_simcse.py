"""Reproduce the paper's text (SimCSE / STS) table at CPU scale (see integrations/text/reproduce.py).

    python examples/reproduce_simcse.py --seeds 3 --threads 1
    python examples/reproduce_simcse.py --quick
"""

from batchsampler.integrations.text.reproduce import main

if __name__ == "__main__":
    raise SystemExit(main())
