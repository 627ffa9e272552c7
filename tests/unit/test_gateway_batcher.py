"""The gateway's batcher bounds each batch by the instance it goes to (`Instance.batch`).

Its collaborators are callbacks, so these tests drive it with real asyncio and real
Instance messages; `pick` here is the router's rule (least outstanding, first on ties)."""

from __future__ import annotations

import asyncio

from smiless.services.gateway.batcher import Batcher
from smiless.v1 import common_pb2


class Two:
    """Two instances of one function and what each was sent."""

    def __init__(self, small: int, big: int) -> None:
        self.instances = [
            common_pb2.Instance(id="small", batch=small),
            common_pb2.Instance(id="big", batch=big),
        ]
        self.load = {i.id: 0 for i in self.instances}
        self.sent: list[tuple[str, int]] = []

    def pick(self) -> common_pb2.Instance | None:
        return min(self.instances, key=lambda i: self.load[i.id])

    def dispatch(
        self, inputs: list[common_pb2.Tensor], deadline: float, inst: common_pb2.Instance | None
    ) -> asyncio.Future[tuple[list[common_pb2.Tensor], str]]:
        assert inst is not None
        self.load[inst.id] += len(inputs)  # counted when the batch goes out, as the data path does
        self.sent.append((inst.id, len(inputs)))
        done: asyncio.Future[tuple[list[common_pb2.Tensor], str]] = asyncio.get_running_loop().create_future()
        done.set_result((list(inputs), inst.id))
        return done


def tensor(k: int) -> common_pb2.Tensor:
    return common_pb2.Tensor(dtype=common_pb2.DATA_TYPE_UINT8, shape=[1], data=bytes([k]))


async def submit_all(b: Batcher[str], n: int, wait: float = 1.0) -> list[tuple[common_pb2.Tensor, str, int]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    jobs = []
    for k in range(n):
        jobs.append(asyncio.ensure_future(b.submit(tensor(k), deadline, wait)))
        await asyncio.sleep(0)  # each joins before the next, as arrivals do
    return await asyncio.gather(*jobs)


async def test_each_batch_holds_at_most_its_instances_batch() -> None:
    two = Two(small=1, big=4)
    b: Batcher[str] = Batcher("f", 2, two.dispatch, two.pick, max_size=8)
    out = await submit_all(b, 5)
    # The first request finds the one-request instance least loaded and goes at once; the
    # next four fill the four-request instance's batch, which then goes without waiting.
    assert two.sent == [("small", 1), ("big", 4)]
    assert [(r, size) for _, r, size in out] == [("small", 1)] + [("big", 4)] * 4
    assert [o.data for o, _, _ in out] == [bytes([k]) for k in range(5)], "each gets its own output"


async def test_an_instance_of_unknown_batch_takes_the_planned_batch_and_the_model_caps_it() -> None:
    two = Two(small=0, big=50)
    b: Batcher[str] = Batcher("f", 3, two.dispatch, two.pick, max_size=4)
    assert b.size_on(two.instances[0]) == 3, "0 = unknown: the app's planned batch"
    assert b.size_on(two.instances[1]) == 4, "never more than the model's largest batch"
    assert b.size_on(None) == 3
    await submit_all(b, 7)
    assert two.sent == [("small", 3), ("big", 4)]


async def test_one_flush_spreads_its_batches_over_the_instances() -> None:
    """A flush that sends several batches binds each to an instance as it goes out, so the
    second goes to the instance the first left least loaded."""
    two = Two(small=2, big=2)
    b: Batcher[str] = Batcher("f", 2, two.dispatch, two.pick, max_size=8)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    # Hold the flush: four requests queue under a batch size they cannot reach one by one.
    b.pick = lambda: common_pb2.Instance(id="held", batch=99)
    jobs = [asyncio.ensure_future(b.submit(tensor(k), deadline, 0.05)) for k in range(4)]
    await asyncio.sleep(0)
    b.pick = two.pick
    await asyncio.gather(*jobs)
    assert sorted(two.sent) == [("big", 2), ("small", 2)]
