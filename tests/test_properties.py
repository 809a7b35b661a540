"""Property-based sweep (hypothesis) of the sampler contract.

- the epoch contract for every sampler and mode, with full, partial or no banks;
- ``state_dict`` / ``load_state_dict`` resumes exactly from any position, the end included;
- ``save`` / ``load`` round trips, and corrupt files are rejected with ``ValueError`` and
  leave the sampler as it was.

Sized for CI: about 200 examples in all, each under a deadline.
"""

import logging
from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchsampler import SAMPLERS

SETTINGS = dict(deadline=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@st.composite
def configs(draw):
    n = draw(st.integers(2, 160))
    k = draw(st.integers(1, min(n - 1, 12)))
    return {
        "name": draw(st.sampled_from(sorted(SAMPLERS))),
        "n": n,
        "batch_size": draw(st.integers(1, n)),
        "k": k,
        "m": draw(st.integers(k, max(k, n))),
        "replacement": draw(st.booleans()),
        "drop_last": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**64)),
        "lockstep": draw(st.sampled_from([1, 3, 16])),
        "seen_share": draw(st.sampled_from([0.0, 0.3, 1.0])),
        "dim": draw(st.integers(1, 6)),
    }


def _make(config, *, fill=True):
    kwargs = dict(
        k=config["k"], m=config["m"], replacement=config["replacement"], drop_last=config["drop_last"],
        seed=config["seed"], lockstep_batches=config["lockstep"],
    )
    sampler = SAMPLERS[config["name"]](config["n"], config["batch_size"], **kwargs)
    if fill:
        rng = np.random.default_rng(config["seed"] % 2**32)
        seen = np.flatnonzero(rng.random(config["n"]) < config["seen_share"])
        if seen.size:
            sampler.update(seen, rng.standard_normal((seen.size, config["dim"])))
            sampler.refresh()  # partial banks: unseen rows get random edges
    return sampler


def _check_epoch(config, batches):
    n, b = config["n"], config["batch_size"]
    expected = n // b if config["drop_last"] else -(-n // b)
    assert len(batches) == expected
    for batch in batches:
        assert len(set(batch)) == len(batch) and all(0 <= i < n for i in batch)
    if config["replacement"]:
        assert all(len(batch) == b for batch in batches)
        return
    counts = Counter(i for batch in batches for i in batch)
    assert max(counts.values(), default=1) == 1  # never an index twice in an epoch
    assert sum(counts.values()) == (expected * b if config["drop_last"] else n)


@settings(max_examples=80, **SETTINGS)
@given(config=configs())
def test_epoch_contract_for_every_sampler_and_mode(config, caplog):
    caplog.set_level(logging.ERROR)  # "refresh skipped" warnings for tiny banks are expected
    sampler = _make(config)
    epochs = [list(sampler) for _ in range(2)]
    for batches in epochs:
        _check_epoch(config, batches)
    assert len(sampler) == len(epochs[0])
    twin = _make(config)
    assert [list(twin) for _ in range(2)] == epochs  # same seed, same batches


@settings(max_examples=60, **SETTINGS)
@given(config=configs(), stop=st.floats(0, 1), epoch=st.integers(0, 3))
def test_state_dict_resumes_exactly_from_any_position(config, stop, epoch, caplog):
    caplog.set_level(logging.ERROR)
    reference = _make(config)
    reference.set_epoch(epoch)
    expected = list(reference)
    interrupted = _make(config)
    interrupted.set_epoch(epoch)
    iterator = iter(interrupted)
    head = [next(iterator) for _ in range(round(stop * len(interrupted)))]
    resumed = _make(config)
    resumed.load_state_dict(interrupted.state_dict())
    assert head + list(resumed) == expected
    reference_next = list(reference)
    assert list(resumed) == reference_next  # and the epoch after it


@settings(max_examples=60, **SETTINGS)
@given(config=configs(), stop=st.floats(0, 1), damage=st.tuples(st.floats(0, 1), st.integers(0, 255), st.booleans()))
def test_checkpoints_round_trip_and_corrupt_ones_change_nothing(config, stop, damage, tmp_path_factory, caplog):
    caplog.set_level(logging.ERROR)
    path = tmp_path_factory.mktemp("ckpt") / "ckpt.npz"
    source = _make(config)
    iterator = iter(source)
    for _ in range(round(stop * len(source))):
        next(iterator)
    source.save(path)
    rest = list(iterator)
    restored = _make(config, fill=False)
    restored.load(path)
    assert list(restored) == rest

    data = bytearray(path.read_bytes())
    where, value, truncate = damage
    offset = min(int(where * len(data)), len(data) - 1)
    if truncate:
        del data[offset:]
    else:
        data[offset] = value
    path.write_bytes(bytes(data))
    target = _make(config, fill=False)
    before = (target.state_dict(), target.bank.seen.copy(), getattr(target, "graph", None))
    try:
        target.load(path)
    except ValueError:
        after = (target.state_dict(), target.bank.seen, getattr(target, "graph", None))
        assert after[0] == before[0] and np.array_equal(after[1], before[1]) and after[2] is before[2]
    else:  # the damage hit bytes nothing reads (zip padding): what loaded must still work
        list(target)
        _check_epoch(config, list(target))
