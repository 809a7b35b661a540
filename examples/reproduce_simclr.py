"""SimCLR with uniform, kNN and BatchSampler batches at CPU scale (see integrations/vision/reproduce.py).

    python examples/reproduce_simclr.py --root ../shared/data/fashion-mnist --threads 1
    python examples/reproduce_simclr.py --quick
"""

from batchsampler.integrations.vision.reproduce import main

if __name__ == "__main__":
    raise SystemExit(main())
