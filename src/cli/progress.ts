/** Download progress bar for `--url` on a TTY (cli-progress, on stderr). */
import cliProgress from 'cli-progress';

/** @returns an `onProgress(received, total)` callback that draws and finishes a bar */
export function progressReporter(url: string): (received: number, total: number) => void {
  let bar: cliProgress.SingleBar | undefined;
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
