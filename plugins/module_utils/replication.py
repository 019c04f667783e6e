# Copyright: fleetscale.split contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who is a shard's primary, from what its nodes say about themselves.

The plan only names the planned primary: after a switchover or a failover another node
holds the writes. The truth is on the servers: the one writable node (read_only OFF) is
the primary. Every node starts read-only, so a shard where no node is writable is either
brand new (nothing replicates yet: the planned primary is opened for writes) or has lost
its primary (a switchover or failover decides, never a routine converge).
"""

from __future__ import annotations

from ansible_collections.fleetscale.split.plugins.module_utils.errors import PlanError

STATUS_KEYS = ("name", "read_only", "replicating", "gtid")


def _check_status(status, position):
    where = "members[%d]" % position
    if not isinstance(status, dict):
        raise PlanError(where, status, "must be a mapping with %s" % ", ".join(STATUS_KEYS))
    for key in STATUS_KEYS:
        if key not in status:
            raise PlanError("%s.%s" % (where, key), None, "is required")
    for key in ("read_only", "replicating"):
        if not isinstance(status[key], bool):
            raise PlanError("%s.%s" % (where, key), status[key], "must be true or false")
    if not isinstance(status["gtid"], str):
        raise PlanError(where + ".gtid", status["gtid"], "must be a GTID list (a string, empty when none)")
    return status


def member_states(results, was_writable=()):
    """Each node's status for shard_state(), from the loop of one query per node of the shard.

    `results` are the loop results of `SELECT @@GLOBAL.read_only, @@GLOBAL.gtid_current_pos` and
    `SHOW SLAVE STATUS` run on each node (`item` its name, `query_result` both answers); a node that did
    not answer (unreachable or its server down) is `answered: false`. `was_writable` names the nodes
    that took writes before this run restarted them: they count as writable.
    """
    if not isinstance(results, list):
        raise PlanError("results", results, "must be the loop results of the shard's state query")
    states = []
    for position, result in enumerate(results):
        if not isinstance(result, dict) or not isinstance(result.get("item"), str):
            raise PlanError("results[%d]" % position, result, "must be a loop result whose item is a node name")
        answers = result.get("query_result")
        answered = not result.get("failed") and not result.get("unreachable") and isinstance(answers, list) \
            and len(answers) == 2 and len(answers[0]) == 1
        if not answered:
            states.append({"name": result["item"], "answered": False, "read_only": True, "live_read_only": True,
                           "replicating": False, "gtid": "", "replica_status": {}})
            continue
        server, replica = answers[0][0], answers[1]
        live_read_only = int(server["read_only"]) == 1
        states.append({"name": result["item"], "answered": True,
                       "read_only": live_read_only and result["item"] not in was_writable,
                       "live_read_only": live_read_only, "replicating": len(replica) > 0,
                       "gtid": str(server["gtid"] or ""), "replica_status": replica[0] if replica else {}})
    return states


def shard_state(shard, members, planned_primary):
    """Return {'primary', 'open_writes', 'seed', 'join'} for one shard.

    `members` lists each node's status: name, read_only, replicating (a replication
    source is configured), gtid (gtid_current_pos) and optionally answered (false: the
    node did not answer and is left out of every decision, a lost replica for one).
    `seed` lists the replicas that hold nothing yet and must be copied from a running
    node; `join` those that hold data but do not replicate. Raises PlanError when the
    shard has two writable nodes, or none and it is not new.
    """
    if not isinstance(members, list) or not members:
        raise PlanError("members", members, "shard %s: no node reported its state" % shard)
    members = [_check_status(m, i) for i, m in enumerate(members)]
    names = [m["name"] for m in members]
    if planned_primary not in names:
        raise PlanError("planned_primary", planned_primary, "shard %s: not one of its nodes %s" % (shard, names))
    silent = [m["name"] for m in members if m.get("answered") is False]
    members = [m for m in members if m.get("answered") is not False]
    if not members:
        raise PlanError("members", silent, "shard %s: no node answered" % shard)
    writable = [m["name"] for m in members if not m["read_only"]]
    if len(writable) > 1:
        raise PlanError("members", writable, "shard %s has %d writable nodes: only one may take writes; fence all "
                        "but the real primary (SET GLOBAL read_only=ON) before anything else" % (shard, len(writable)))
    replicas = [m for m in members if m["name"] != planned_primary]
    fresh = not any(m["replicating"] for m in members) and not any(m["gtid"] for m in replicas)
    if writable:
        primary = writable[0]
    elif fresh and silent:
        # A silent node may be a primary with data: opening another node would make two.
        raise PlanError("members", silent, "shard %s has no writable node among those that answered; a shard is "
                        "opened as new only when every node answers" % shard)
    elif fresh:
        primary = planned_primary
    else:
        raise PlanError("members", names, "shard %s has no writable primary and is not new: run "
                        "playbooks/database_failover.yml -e database_shard=%s to promote the most advanced replica"
                        % (shard, shard))
    others = [m for m in members if m["name"] != primary and not m["replicating"]]
    return {
        "primary": primary,
        "open_writes": not writable,
        "seed": [m["name"] for m in others if not m["gtid"]],
        "join": [m["name"] for m in others if m["gtid"]],
    }


def parse_gtid_list(text, field="gtid"):
    """{domain: sequence} of a MariaDB GTID list such as '0-1001-45,1-1002-3' (empty: {})."""
    if not isinstance(text, str):
        raise PlanError(field, text, "must be a GTID list (a string)")
    positions = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split("-")
        # ASCII digits only: '4²'.isdigit() is true, but int('4²') fails.
        if len(parts) != 3 or not all(part.isascii() and part.isdigit() for part in parts):
            raise PlanError(field, text, "%r is not a GTID (domain-server-sequence)" % item)
        domain, sequence = int(parts[0]), int(parts[2])
        if domain in positions:
            raise PlanError(field, text, "names domain %d twice" % domain)
        positions[domain] = sequence
    return positions


def most_advanced(shard, candidates):
    """The candidate whose GTID position is at or past every other's in every domain.

    `candidates` lists {name, gtid}: the nodes that may become the primary, each with the
    position it has applied. Raises PlanError when there is none, or when no node is ahead of
    all the others (their histories differ: a person decides, not this function).
    """
    if not isinstance(candidates, list) or not candidates:
        raise PlanError("candidates", candidates, "shard %s: no replica is reachable and replicating: nothing to "
                        "promote" % shard)
    parsed = []
    for position, candidate in enumerate(candidates):
        where = "candidates[%d]" % position
        if not isinstance(candidate, dict) or "name" not in candidate or "gtid" not in candidate:
            raise PlanError(where, candidate, "must be a mapping with name and gtid")
        parsed.append((candidate["name"], parse_gtid_list(candidate["gtid"], where + ".gtid")))

    def covers(mine, theirs):
        return all(mine.get(domain, -1) >= sequence for domain, sequence in theirs.items())

    for name, mine in parsed:
        if all(covers(mine, theirs) for _other, theirs in parsed):
            return name
    raise PlanError("candidates", ["%s at %s" % (c["name"], c["gtid"]) for c in candidates],
                    "shard %s: no replica has every transaction the others have; their histories differ" % shard)


def replication_health(name, state, semi_sync_timeout_ms):
    """{'problems': [...], 'summary': str} of one node of a replicated shard.

    `state` is what the node says: read_only (bool), status (its Rpl_semi_sync_master_* global
    status, names lower case) and replica (its SHOW SLAVE STATUS row, empty when it replicates
    from nobody). A writable node must run semi-synchronously with a replica connected; a
    read-only one must replicate with both threads running.
    """
    if not isinstance(state, dict) or not isinstance(state.get("read_only"), bool):
        raise PlanError("state", state, "%s: must be a mapping with read_only (true or false), status and replica"
                        % name)
    status, replica = state.get("status") or {}, state.get("replica") or {}
    if not isinstance(status, dict) or not isinstance(replica, dict):
        raise PlanError("state", state, "%s: status and replica must be mappings" % name)
    problems = []
    if not state["read_only"]:
        semi_sync = str(status.get("rpl_semi_sync_master_status", "OFF")).upper()
        clients = int(status.get("rpl_semi_sync_master_clients", 0) or 0)
        unacknowledged = int(status.get("rpl_semi_sync_master_no_tx", 0) or 0)
        if semi_sync != "ON" or clients < 1:
            problems.append(
                "%s is the primary and replicates ASYNCHRONOUSLY (semi-sync %s, %d replica(s) connected, %d commit(s) "
                "acknowledged without a replica since it started): no replica acknowledged within %s ms, so an "
                "acknowledged check-in may exist on this node only. Bring a replica back (site.yml seeds an empty "
                "one) before any switchover." % (name, semi_sync, clients, unacknowledged, semi_sync_timeout_ms))
        summary = "%s: primary, semi-synchronous with %d replica(s)" % (name, clients)
        return {"problems": problems, "summary": summary}
    if not replica:
        problems.append("%s is read-only and replicates from nobody: it holds no copy of new check-ins (an old "
                        "primary after a failover: empty its data directory and run site.yml to seed it again)"
                        % name)
        return {"problems": problems, "summary": "%s: replica of nobody" % name}
    threads = {thread: replica.get("Slave_%s_Running" % thread) for thread in ("IO", "SQL")}
    stopped = [thread for thread, running in threads.items() if running != "Yes"]
    if stopped:
        error = replica.get("Last_SQL_Error") or replica.get("Last_IO_Error") or "no error given"
        problems.append("%s does not replicate from %s: %s thread(s) not running (%s)"
                        % (name, replica.get("Master_Host"), " and ".join(stopped), error))
    summary = "%s: replica of %s, %s s behind" % (name, replica.get("Master_Host"),
                                                  replica.get("Seconds_Behind_Master"))
    return {"problems": problems, "summary": summary}
