import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { envWithoutCoverage } from './child-env'

/** The repository root, where users run the commands the README and the examples give. */
export const root = join(__dirname, '..')

export interface Ran { code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }

/** The command an example's header gives, "// Run: <command>". */
export async function commandOf (file: string): Promise<string> {
  const source = await readFile(join(root, file), 'utf8')
  const command = /^\/\/ Run: (.+?)\s*$/m.exec(source)?.[1]
  if (command === undefined) throw new Error(`${file} has no "// Run:" line in its header`)
  return command
}

/**
 * Runs `command` as a user would, in a shell at the repository root, without coverage hooks (the
 * examples are run to prove they work, not to cover lib/), with `env` added to the environment.
 * `onStdout` may act on the output as it comes; `stop()` sends SIGTERM to the whole process group,
 * as Ctrl-C does to a terminal's.
 */
export function runCommand (command: string, env: NodeJS.ProcessEnv, onStdout?: (text: string, stop: () => void) => void): Promise<Ran> {
  const child = spawn(command, { cwd: root, shell: true, detached: true, env: envWithoutCoverage(env) })
  const stop = (): void => { process.kill(-(child.pid as number), 'SIGTERM') }
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => {
    stdout += chunk
    onStdout?.(stdout, stop)
  })
  child.stderr.on('data', (chunk) => { stderr += chunk })
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })))
}
