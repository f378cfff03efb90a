/**
 * Download progress bar for `--url` on a TTY (cli-progress, on stderr). cli-progress is
 * imported here, when a bar is wanted: the one-file bundle of `capsule run` would otherwise load
 * it at every start (scripts/build-bundle.ts).
 */
import type { SingleBar } from 'cli-progress';

/** @returns an `onProgress(received, total)` callback that draws and finishes a bar */
export async function progressReporter(url: string): Promise<(received: number, total: number) => void> {
  const { default: cliProgress } = await import('cli-progress');
  let bar: SingleBar | undefined;
  return (received, total) => {
    if (!bar) {
      bar = new cliProgress.SingleBar({
        stream: process.stderr,
        format: `⬇️  ${url} [{bar}] {percentage}% {value}/{total} bytes`,
        hideCursor: true,
        clearOnComplete: true,
      }, cliProgress.Presets.shades_classic);
      bar.start(total || received, 0);
    }
    if (!total) bar.setTotal(received);
    bar.update(received);
    if (total && received >= total) bar.stop();
  };
}
