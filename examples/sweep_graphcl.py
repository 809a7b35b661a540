"""GraphCL hyperparameter investigation, one setting at a time (see integrations/graph/sweep.py).

    python examples/sweep_graphcl.py --dataset MUTAG --seeds 3 --output-dir examples/graphcl/sweep_mutag
    python examples/sweep_graphcl.py --quick
"""

from batchsampler.integrations.graph.sweep import main

if __name__ == "__main__":
    raise SystemExit(main())
