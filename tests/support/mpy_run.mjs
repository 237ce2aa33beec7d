// Runs Python under real MicroPython (the WebAssembly port) with the firmware library in /lib.
// Usage: node mpy_run.mjs <heap-bytes> <lib-dirs> <script-file> [more scripts...]
// <lib-dirs> is a list of directories joined by the path delimiter (":"); their modules land
// flat in /lib, as on the device, and a name found in two of them is refused.
// Each script runs as its own top-level runPython call (MicroPython only reclaims memory
// between them). Exit code 0 when every script ran, 1 when one raised (traceback on stderr).
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "node:fs";
import path from "node:path";

const [heapArg, libDirs, ...scripts] = process.argv.slice(2);
const out = [];
const mp = await loadMicroPython({
  heapsize: Number(heapArg),
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
  linebuffer: true,
});

mp.FS.mkdir("/lib");
const from = new Map();
for (const libDir of libDirs.split(path.delimiter)) {
  for (const name of fs.readdirSync(libDir)) {
    if (!name.endsWith(".py")) continue;
    if (from.has(name)) {
      process.stderr.write(`${name} is in both ${from.get(name)} and ${libDir}: /lib is flat\n`);
      process.exit(2);
    }
    from.set(name, libDir);
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
