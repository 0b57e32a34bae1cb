import { conformance } from './conformance'

conformance({
  engine: 'memory',
  async setup () {
    return { queue: { engine: 'memory' } }
  }
})
