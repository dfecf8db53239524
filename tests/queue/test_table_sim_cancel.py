"""The seeded simulation (``queue_sim.py``) with producers that CANCEL jobs at random.

On top of every invariant the base simulation checks after each step, this checks:

1. **Agreement.** When a CANCEL is delivered, every replica of the configuration that
   still has the job outstanding decides alike: all cancel it, or all refuse (a CANCEL
   from a member that did not send the job). Replicas for which it is completed, or
   which never delivered the job, do nothing.
2. **Never started after the cancel.** A session that delivered a CANCEL it took is
   never told to run or give up that job again, not after failovers, joins, leaves,
   crashes or merges. A job whose CANCEL was taken runs afterwards only on sessions
   that were on the other side of a partition when the CANCEL was delivered (they never
   saw it: extended virtual synchrony lets nothing better happen without a message).
3. **Refusal.** A CANCEL from a sender that is not the job's producer changes nothing.
4. **Liveness.** After healing and quiescing, every held job was completed by an ACK or
   by a CANCEL, and every table is empty.

The model's producers never re-send a job after cancelling it, as a real producer does
not (its receipt is settled by the CANCEL it sees delivered on FEEDBACK).
``SPREADQ_SIM_SEEDS`` and ``SPREADQ_SIM_STEPS`` work as for ``test_table.py``.
"""

from __future__ import annotations

import os
from collections import defaultdict

import pytest
from queue_sim import Component, Key, Message, Replica, Simulation, decode_or_none

from spreadq.queue.effects import CancelJob, CancelRefused, CancelTaken, Effect, GiveUpJob, RunJob
from spreadq.queue.envelope import Cancel, encode
from spreadq.queue.jobs import JobRef
from spreadq.queue.rules import Rule

SEEDS = int(os.environ.get("SPREADQ_SIM_SEEDS", "30"))
STEPS = int(os.environ.get("SPREADQ_SIM_STEPS", "300"))
RULES = ("round_robin", "key_affinity", "least_loaded")
INTRUDER = "#intruder#d"


class CancelSimulation(Simulation):
    """The base model, plus CANCELs from producers (and from an intruder)."""

    def __init__(self, seed: int, *, rule: str | Rule) -> None:
        self.taken_by: dict[Key, set[int]] = defaultdict(set)  # sessions that cancelled
        self.apart: dict[Key, set[int]] = defaultdict(set)  # on another side then
        self.decisions: dict[str, str] = {}  # per delivery: replica -> what it did
        self.cancels_sent = self.cancels_taken = self.cancels_refused = 0
        self.started_after_cancel = 0  # by sessions on the other side of a partition
        self.cancelled_running = 0  # CANCELs that stopped a running handler
        self.just_taken: tuple[str, JobRef] | None = None
        super().__init__(seed, rule=rule)

    def produce(self, component: Component) -> None:
        roll = self.rng.random()
        if roll < 0.15 and self.sent:
            index = self.rng.randrange(max(0, len(self.sent) - 40), len(self.sent))
            producer, spec = self.sent.pop(index)  # a cancelled job is never re-sent
            sender = self.sender_of(producer)
            data = encode(Cancel(JobRef(producer, spec.seq)))
            component.pending.append(Message(sender, data))
            self.cancels_sent += 1
        elif roll < 0.18 and self.sent:
            producer, spec = self.rng.choice(self.sent[-40:])
            data = encode(Cancel(JobRef(producer, spec.seq)))
            component.pending.append(Message(INTRUDER, data))
        else:
            super().produce(component)

    def carry_out(self, replica: Replica, effect: Effect) -> None:
        if isinstance(effect, CancelTaken):
            key = (replica.lifetime, effect.ref)
            self.decisions[replica.name] = "cancelled"
            self.taken_by[key].add(replica.session)
            self.completed.add(key)
            self.cancels_taken += 1
            self.just_taken = (replica.name, effect.ref)
            if effect.by == INTRUDER:
                self.fail(f"{replica.name} took a CANCEL of {effect.ref} from the intruder")
        elif isinstance(effect, CancelRefused):
            self.decisions[replica.name] = "refused"
            self.cancels_refused += 1
            if effect.sender != INTRUDER:
                self.fail(f"{replica.name} refused the producer's CANCEL of {effect.ref}")
        elif isinstance(effect, RunJob | GiveUpJob):
            key = (replica.lifetime, effect.ref)
            if replica.session in self.taken_by.get(key, ()):
                self.fail(f"{replica.name} told to run {effect.ref} after cancelling it")
            if key in self.taken_by:
                if replica.session not in self.apart[key]:
                    self.fail(f"{replica.name} runs cancelled {effect.ref}, not partitioned")
                self.started_after_cancel += 1
        elif isinstance(effect, CancelJob) and effect.running:
            self.cancelled_running += self.just_taken == (replica.name, effect.ref)
        super().carry_out(replica, effect)

    def deliver(self, component: Component) -> None:
        message = component.pending[0]
        cancel = _cancel_of(message)
        if cancel is None:
            super().deliver(component)
            return
        members = list(component.members)
        had = {
            name: self.replicas[name].table.is_outstanding(cancel.ref)
            for name in members
            if self.replicas[name].table.view is not None
        }
        self.decisions = {}
        super().deliver(component)
        decided = {self.decisions.get(name, "nothing") for name, yes in had.items() if yes}
        if len(decided) > 1:
            self.fail(f"replicas decided {decided} on the CANCEL of {cancel.ref}")
        for name, yes in had.items():
            if not yes and name in self.decisions:
                self.fail(f"{name} acted on a CANCEL of {cancel.ref} it had no entry for")
        if "cancelled" in decided:
            key = (self.lifetime, cancel.ref)
            here = {self.replicas[name].session for name in members}
            self.apart[key] |= {r.session for r in self.alive() if r.session not in here}


def _cancel_of(message: Message) -> Cancel | None:
    decoded = decode_or_none(message.data)
    return decoded if isinstance(decoded, Cancel) else None


@pytest.mark.parametrize("seed", range(SEEDS))
def test_cancel_simulation(seed: int) -> None:
    sim = CancelSimulation(seed, rule=RULES[seed % 3])
    for _ in range(STEPS):
        sim.step()
    sim.quiesce()
    sim.check_liveness()
    assert sim.cancels_sent > 0


def test_the_cancel_simulation_covers_the_races() -> None:
    # over the CI seeds: CANCELs taken, refused (intruder), stopping a running handler,
    # and jobs run after their CANCEL only on the other side of a partition
    totals = {"cancels_taken": 0, "cancels_refused": 0, "cancelled_running": 0}
    for seed in range(10):
        sim = CancelSimulation(seed, rule=RULES[seed % 3])
        for _ in range(STEPS):
            sim.step()
        for name in totals:
            totals[name] += getattr(sim, name)
    assert all(totals.values()), totals
