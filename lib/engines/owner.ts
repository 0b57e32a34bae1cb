import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'

// Who holds a lease: `<hostname>:<pid>:<random>`. The random part tells two lives of one pid
// apart (a restarted container's worker is often pid 1 again, under the same hostname).
//
// Caveat: isDeadOwner() trusts that one hostname means one PID namespace. Processes in different
// PID namespaces that share a hostname and one database file (containers started with the same
// --hostname, or --network=host setups that copy the host's name) would read each other's pids
// as their own: a live worker could be declared dead and its jobs run twice. Docker gives every
// container its own hostname by default; keep it that way when several of them share a file.

let own: string | undefined

/** This process's owner id, made once. */
export function ownerId (): string {
  own ??= `${hostname()}:${process.pid}:${randomBytes(6).toString('hex')}`
  return own
}

/**
 * True only when `owner` is known to be gone: a process of this host whose pid no longer exists
 * (`ESRCH`), or an earlier process that had this process's pid. Anything uncertain (another
 * host, a pid we may not signal, a live pid, a name we cannot read) is false, and the lease is
 * left to expire instead.
 */
export function isDeadOwner (owner: string): boolean {
  const parts = owner.split(':')
  if (parts.length < 3) return false
  const pid = Number(parts[parts.length - 2])
  if (parts.slice(0, -2).join(':') !== hostname() || !Number.isSafeInteger(pid) || pid <= 0) return false
  // one owner id per process: another id with our pid is a dead process whose pid we reuse
  if (pid === process.pid) return owner !== ownerId()
  try {
    process.kill(pid, 0)
    return false
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'
  }
}
