"""Reproduce the paper's graph table at CPU scale (see integrations/graph/reproduce.py).

    python examples/reproduce_graphcl.py --root ../shared/data/tu --seeds 5
    python examples/reproduce_graphcl.py --quick
"""

from batchsampler.integrations.graph.reproduce import main

if __name__ == "__main__":
    raise SystemExit(main())
