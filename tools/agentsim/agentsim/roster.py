"""The simulated agents: which tenant each belongs to, and each one's own sequence numbers.

Agents are numbered 0..N-1 (agent_id "agent-000123") and spread over the tenants in proportion
to the tenants' sizes. The tenants are interleaved along the numbering rather than given in
blocks, because arrivals walk the agents round-robin: blocks would load one tenant after the
other (and, with several shards, one shard after the other) instead of all of them at once.
"""

from __future__ import annotations

import heapq
import random
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from agentsim.errors import UsageError

MAX_AGENTS = 1_000_000  # the roster keeps one tenant index per agent in memory


@dataclass(slots=True)
class Agent:
    agent_id: str
    tenant: str
    next_seq: int
    # "Bearer <token>" of this agent, computed when the agent is created (an HMAC per check-in
    # would be simulator CPU counted as latency); None sends no Authorization header.
    authorization: str | None = None

    def take_seq(self) -> int:
        """The seq of a check-in about to be sent; a seq is never handed out twice."""
        seq = self.next_seq
        self.next_seq += 1
        return seq


def spread(total: int, sizes: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Split total agents over tenants in proportion to their sizes (largest remainder method)."""
    if total < 1:
        raise UsageError(f"--agents must be at least 1, got {total}")
    if not sizes:
        raise UsageError("no tenants to spread the agents over")
    weight_sum = sum(size for _, size in sizes)
    if weight_sum <= 0:
        # Tenants without a size (e.g. --tenants a,b,c) share the agents equally.
        sizes = [(name, 1) for name, _ in sizes]
        weight_sum = len(sizes)
    quotas = [(name, total * size / weight_sum) for name, size in sizes]
    counts = {name: int(quota) for name, quota in quotas}
    left = total - sum(counts.values())
    # Ties go to the tenant listed first, so the spread is the same on every run.
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i][1] - int(quotas[i][1])), i))
    for i in by_remainder[:left]:
        counts[quotas[i][0]] += 1
    return counts


def interleave(counts: dict[str, int]) -> Iterator[int]:
    """Tenant indexes (in the order of counts) for agents 0..N-1, each tenant evenly spaced."""
    def positions(index: int, count: int) -> Iterator[tuple[float, int]]:
        # Agent j of a tenant with c agents sits at (j + 0.5) / c of the way along the numbering.
        return (((j + 0.5) / count, index) for j in range(count))

    streams = [positions(i, c) for i, c in enumerate(counts.values()) if c > 0]
    return (index for _, index in heapq.merge(*streams))


class Roster:
    """N agents over the tenants; arrival k goes to agent (k + offset) % N.

    token_for(tenant, agent_id), when given, gives each agent its credential.
    """

    def __init__(self, counts: dict[str, int], seq_start: int, offset: int = 0,
                 token_for: Callable[[str, str], str] | None = None):
        self.tenants = [name for name, count in counts.items() if count > 0]
        active = {name: counts[name] for name in self.tenants}
        self.size = sum(active.values())
        if self.size < 1:
            raise UsageError("the roster has no agents: every tenant has 0 agents")
        if self.size > MAX_AGENTS:
            raise UsageError(f"--agents {self.size} is more than this tool simulates ({MAX_AGENTS})")
        self.counts = active
        self.seq_start = seq_start
        self.offset = offset % self.size
        self._tenant_of = array("I", interleave(active))
        self._token_for = token_for
        # Agents are created on first use: a short run touches few of a large fleet's agents.
        self._agents: dict[int, Agent] = {}

    def agent(self, number: int) -> Agent:
        found = self._agents.get(number)
        if found is None:
            tenant = self.tenants[self._tenant_of[number]]
            agent_id = f"agent-{number:06d}"
            authorization = f"Bearer {self._token_for(tenant, agent_id)}" if self._token_for else None
            found = Agent(agent_id=agent_id, tenant=tenant, next_seq=self.seq_start, authorization=authorization)
            self._agents[number] = found
        return found

    def for_arrival(self, k: int) -> Agent:
        return self.agent((k + self.offset) % self.size)


def default_seq_start() -> int:
    """Microseconds since the epoch.

    The check-in table has a unique key on (tenant, agent_id, seq) and treats a repeated seq as a
    retry. Starting every run at the current time keeps each agent's seq increasing across runs
    against the same database, so a new run never collides with an old run's rows (which would
    be answered as duplicates and would make `verify` pass on old data).
    """
    return time.time_ns() // 1000


def offset_for_seed(seed: int | None, size: int) -> int:
    """The first agent of the round robin: agent 0 without a seed, a reproducible pick with one.

    Short runs touch only the first few agents; a seed spreads repeated short runs over the fleet.
    """
    if seed is None:
        return 0
    return random.Random(seed).randrange(size)
