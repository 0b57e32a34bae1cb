import { test } from 'tap'
import { performance } from 'node:perf_hooks'
import { TimerList, Timers } from '../lib/timers'
import type { TimedEntry } from '../lib/timers'
import { build, deferred } from './helpers'

function entry (name: string, fired: Array<{ name: string, late: number }>, onFire = (): void => {}): TimedEntry & { startedAt: number } {
  const self: TimedEntry & { startedAt: number } = {
    startedAt: 0,
    timerPrev: null,
    timerNext: null,
    timerList: null,
    onTimeout () {
      fired.push({ name, late: performance.now() - self.startedAt - (self.timerList instanceof TimerList ? self.timerList.duration : 0) })
      self.timerList?.remove(self)
      onFire()
    }
  }
  return self
}

/** Starts `e` now under a `duration` limit, as a task does. */
function start (timers: Timers, e: TimedEntry & { startedAt: number }, duration: number): void {
  e.startedAt = performance.now()
  timers.add(e, duration)
}

test('one timer serves a list; removing the head re-arms it for the next deadline', async (t) => {
  const timers = new Timers()
  const fired: Array<{ name: string, late: number }> = []
  const first = entry('first', fired)
  const second = entry('second', fired)
  const thirdFired = deferred()
  const third = entry('third', fired, thirdFired.resolve)
  start(timers, first, 30)
  await new Promise((resolve) => setTimeout(resolve, 10))
  start(timers, second, 30)
  start(timers, third, 30)
  // the middle and the head leave before their deadlines: the timer armed for `first` fires early
  second.timerList?.remove(second)
  first.timerList?.remove(first)
  t.equal(first.timerList, null)
  await thirdFired.promise
  t.same(fired.map((f) => f.name), ['third'])
  t.ok(fired[0].late >= 0, 'never before its deadline')
  t.equal(third.timerList, null)
})

test('entries of different limits live in different lists; an emptied list keeps no timer', async (t) => {
  const timeouts = (): number => process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length
  const before = timeouts()
  const timers = new Timers()
  const fired: Array<{ name: string, late: number }> = []
  const shortFired = deferred()
  const short = entry('short', fired, shortFired.resolve)
  const long = entry('long', fired)
  start(timers, long, 40)
  start(timers, short, 10)
  t.not(short.timerList, long.timerList)
  t.equal(timeouts(), before + 2, 'one timer per list')
  long.timerList?.remove(long)
  await shortFired.promise
  t.same(fired.map((f) => f.name), ['short'])
  t.equal(long.timerList, null, 'the long one left before its time')
  t.equal(timeouts(), before, 'both lists are empty: no timer holds the process open')
})

test('tasks sharing a time limit time out one by one, in start order', async (t) => {
  const { app, logs } = await build(t, { timeout: 20 })
  const release = deferred()
  app.get('/', (req, reply) => reply.sendAndContinue('ok', [
    function quick () { return release.promise },
    function hangsA () { return new Promise(() => {}) },
    function hangsB () { return new Promise(() => {}) }
  ]))
  await app.inject('/')
  release.resolve()
  await logs.untilOutcomes(3)
  t.same(logs.outcomes.map((line) => `${line.deferred?.task}:${line.deferred?.outcome}`), ['quick:completed', 'hangsA:timeout', 'hangsB:timeout'])
})

test('oldest(): the entry that started first over every list, the list without a limit included', async (t) => {
  const timers = new Timers()
  const fired: Array<{ name: string, late: number }> = []
  t.equal(timers.oldest(), null, 'nothing runs')
  const unlimited = entry('unlimited', fired)
  const limited = entry('limited', fired)
  const later = entry('later', fired)
  // three lists, the oldest entry in the second one made
  start(timers, later, 60_000)
  later.startedAt = 3
  start(timers, unlimited, 0)
  unlimited.startedAt = 1
  start(timers, limited, 30_000)
  limited.startedAt = 2
  t.equal(timers.oldest(), unlimited)
  unlimited.timerList?.remove(unlimited)
  t.equal(timers.oldest(), limited)
  limited.timerList?.remove(limited)
  t.equal(timers.oldest(), later)
  later.timerList?.remove(later)
  t.equal(timers.oldest(), null)
  t.same(fired, [], 'the list without a limit has no timer, and the others were left before theirs')
})
