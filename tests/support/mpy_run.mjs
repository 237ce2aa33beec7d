// Runs Python under real MicroPython (the WebAssembly port) with firmware/lib on sys.path.
// Usage: node mpy_run.mjs <heap-bytes> <lib-dir> <script-file> [more scripts...]
// Each script runs as its own top-level runPython call (MicroPython only reclaims memory
// between them). Exit code 0 when every script ran, 1 when one raised (traceback on stderr).
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "node:fs";
import path from "node:path";

const [heapArg, libDir, ...scripts] = process.argv.slice(2);
const out = [];
const mp = await loadMicroPython({
  heapsize: Number(heapArg),
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
  linebuffer: true,
});

mp.FS.mkdir("/lib");
for (const name of fs.readdirSync(libDir)) {
  if (name.endsWith(".py")) {
    mp.FS.writeFile("/lib/" + name, fs.readFileSync(path.join(libDir, name)));
  }
}
mp.runPython("import sys\nif '/lib' not in sys.path: sys.path.append('/lib')");
for (const script of scripts) {
  try {
    mp.runPython(fs.readFileSync(script, "utf8"));
  } catch (err) {
    process.stderr.write(String(err && err.message ? err.message : err) + "\n");
    process.exit(1);
  }
}
