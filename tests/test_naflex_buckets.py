"""NaFlex length buckets (bigvl/data/naflex_buckets.py): batch sizes, the step → bucket schedule, the
stream positions each batch reads (checked against a naive running sum), hosts, resume and faults."""
import grain
import numpy as np
import pytest

from bigvl.data.naflex_buckets import BucketSchedule, StepBatches
from bigvl.data.pipeline import ReplaceFaulty

LENGTHS = (16, 32, 64)


def fake_patchify(image, length):
    """Stands in for the aspect-keeping patching: records the image's size and the budget."""
    patches = np.zeros((length, 3), np.uint8)
    patches[0] = image[0, 0]
    return patches, np.asarray(image.shape[:2], np.int32)


class Positions(grain.MapDataset):
    """Stream position p → an example whose image encodes p (None at the `faulty` positions)."""

    def __init__(self, n=100_000, faulty=()):
        super().__init__()
        self.n, self.faulty = n, set(faulty)

    def __len__(self):
        return self.n

    def __getitem__(self, p):
        if p in self.faulty:
            return None
        image = np.full((2 + p % 3, 5, 3), p % 251, np.uint8)  # any size: the patching makes them equal
        return {"image": image, "index": np.int64(p)}


def test_batch_sizes_keep_tokens_per_step_and_divide():
    s = BucketSchedule(LENGTHS, tokens_per_step=1000, seed=0, multiple=4)
    assert s.batch_sizes == (60, 28, 12)  # floor(1000 / L) rounded down to a multiple of 4
    assert all(b % 4 == 0 and b * L <= 1000 for b, L in zip(s.batch_sizes, LENGTHS))
    assert all(1000 - t < 4 * L for t, L in zip(s.tokens, LENGTHS))  # within one multiple of the budget


def test_schedule_is_seeded_cycles_and_offsets_are_the_running_sum():
    s = BucketSchedule(LENGTHS, tokens_per_step=1000, seed=3, multiple=4)
    steps = [s.bucket(n) for n in range(30)]
    for c in range(10):  # every cycle of K steps visits each length once
        assert sorted(steps[3 * c:3 * c + 3]) == [0, 1, 2]
    running = 0
    for n in range(30):  # naive running sum of the earlier batches
        assert s.offset(n) == running
        running += s.batch_size(n)
    assert steps == [BucketSchedule(LENGTHS, 1000, seed=3, multiple=4).bucket(n) for n in range(30)]
    assert steps != [BucketSchedule(LENGTHS, 1000, seed=4, multiple=4).bucket(n) for n in range(30)]


def test_too_few_tokens_names_the_key():
    with pytest.raises(ValueError, match="data.naflex.tokens_per_step 100: length.*64"):
        BucketSchedule(LENGTHS, tokens_per_step=100, multiple=2)


def test_batches_tile_the_stream_and_hosts_join_to_one_host():
    s = BucketSchedule(LENGTHS, tokens_per_step=1000, seed=1, multiple=4)
    one = StepBatches(Positions(), s, fake_patchify)
    seen = np.concatenate([one[n]["index"] for n in range(9)])
    np.testing.assert_array_equal(seen, np.arange(len(seen)))  # no gap, no overlap
    for n in range(9):
        b = one[n]
        L = s.length(n)
        assert b["image_patches"].shape == (s.batch_size(n), L, 3) and b["image_patches"].dtype == np.uint8
        np.testing.assert_array_equal(b["image_spatial_shapes"][:, 0], 2 + b["index"] % 3)
        hosts = [StepBatches(Positions(), s, fake_patchify, host=h, hosts=2)[n] for h in range(2)]
        for key in b:
            np.testing.assert_array_equal(np.concatenate([h[key] for h in hosts]), b[key])


def test_resume_from_iterator_state_replays_the_same_batches():
    s = BucketSchedule(LENGTHS, tokens_per_step=1000, seed=2, multiple=4)

    def stream():
        return iter(StepBatches(Positions(), s, fake_patchify).to_iter_dataset(grain.ReadOptions(num_threads=2)))
    it = stream()
    for _ in range(5):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(4)]
    resumed = stream()
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_faulty_records_are_replaced_and_counted():
    s = BucketSchedule(LENGTHS, tokens_per_step=1000, seed=0, multiple=4)
    faulty = {3, 70, 71}
    ds = StepBatches(ReplaceFaulty(Positions(faulty=faulty), stride=60), s, fake_patchify)
    batches = [ds[n] for n in range(6)]
    assert sum(int(b["skipped_records"].sum()) for b in batches) == len(faulty)
    for b in batches:
        assert not set(b["index"].tolist()) & faulty
