"""Kill a training process mid-epoch and resume it, through a real loader.

Digits, ``BatchSampler(target_hardness=0.4, refresh_every=10)``, 2 persistent workers. The
process saves after consuming batch 12 of epoch 2 (``sampler.save`` and, with
``StatefulDataLoader``, the loader's state), is killed with SIGKILL, and a new process loads and
finishes the epoch. Prints where the resumed run starts and whether the epoch equals an
uninterrupted run's.

    python examples/checks/kill_and_resume.py            # StatefulDataLoader and plain DataLoader
"""

import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import sys, json, time, numpy as np, torch
from sklearn.datasets import load_digits
from batchsampler import BatchSampler
mode, loader_kind, path, out = sys.argv[1:5]
x = load_digits().data.astype(np.float32); x -= x.mean(0); bank = torch.from_numpy(x)
s = BatchSampler(len(x), 64, seed=7, target_hardness=0.4, warmup_epochs=1, refresh_every=10)
if loader_kind == "stateful":
    from torchdata.stateful_dataloader import StatefulDataLoader as Loader
else:
    from torch.utils.data import DataLoader as Loader
loader = Loader(range(len(x)), batch_sampler=s, num_workers=2, persistent_workers=True)
if mode == "resume":
    s.load(path)
    if loader_kind == "stateful":
        loader.load_state_dict(torch.load(path + ".loader.pt"))
epochs = []
for epoch in range(1 if mode == "resume" else 3):
    batches = []
    for step, b in enumerate(loader):
        batches.append(b.tolist()); s.update(b, bank[b])
        if mode == "kill" and epoch == 2 and step == 11:
            s.save(path)
            if loader_kind == "stateful":
                torch.save(loader.state_dict(), path + ".loader.pt")
            json.dump(epochs + [batches], open(out, "w")); print("saved", flush=True)
            time.sleep(600)
    epochs.append(batches)
json.dump(epochs, open(out, "w"))
'''


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        d = Path(directory)

        def child(*args: str) -> list[str]:
            return [sys.executable, "-c", CHILD, *args]

        subprocess.run(child("full", "plain", str(d / "none"), str(d / "full.json")), check=True)
        full = json.loads((d / "full.json").read_text())[2]
        for kind in ("stateful", "plain"):
            process = subprocess.Popen(child("kill", kind, str(d / f"{kind}.ckpt"), str(d / "head.json")),
                                       stdout=subprocess.PIPE, text=True)
            if process.stdout.readline().strip() != "saved":
                raise RuntimeError("the killed run did not reach its checkpoint")
            process.send_signal(signal.SIGKILL)
            process.wait()
            subprocess.run(child("resume", kind, str(d / f"{kind}.ckpt"), str(d / "rest.json")), check=True)
            head = json.loads((d / "head.json").read_text())[2]
            rest = json.loads((d / "rest.json").read_text())[0]
            start = next((i for i in range(len(full)) if full[i:] == rest), None)
            print(f"{kind}: killed (rc {process.returncode}) after {len(head)} of {len(full)} batches; resumed at "
                  f"batch {start}; epoch equals the uninterrupted run: {head + rest == full}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
