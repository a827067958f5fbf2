#!/usr/bin/env node
// Run an ONNX model in ONNX Runtime (CPU) on inputs stored as .npy files and
// write every output as .npy: the reference engine of the parity tests.
//
// Usage:
//   node scripts/ort-run.js MODEL --input NAME=FILE.npy ... --output-dir DIR
//       [--threads N] [--opt-level disabled|basic|extended|all]
//       [--warmup W --iterations I] [--json FILE]
//
// Output NAME is written to DIR/<NAME with characters outside [A-Za-z0-9_.-]
// replaced by _>.npy, and DIR/outputs.json maps each real output name to its
// file. With --iterations, the in-process latency of session.run (mean, p50,
// p90 in ms) is printed and stored in the --json report.
//
// onnxruntime-node is loaded from $ROFORMER_ORT_DIR/node_modules, by default
// <repo>/.deps/ort/node_modules; scripts/install-ort puts it there.
'use strict';

const fs = require('fs');
const path = require('path');

const USAGE = `usage: node scripts/ort-run.js MODEL --input NAME=FILE.npy ... --output-dir DIR
    [--threads N] [--opt-level disabled|basic|extended|all]
    [--warmup W --iterations I] [--json FILE]

  --input NAME=FILE     feed model input NAME from a .npy file (repeat per input)
  --output-dir DIR      write each output as DIR/<sanitized name>.npy and DIR/outputs.json
  --threads N           intra-op threads of the session (default: ONNX Runtime's choice)
  --opt-level LEVEL     graph optimization level (default: all)
  --warmup W            untimed runs before timing (default 0)
  --iterations I        timed runs; prints mean, p50 and p90 latency in ms (default 0)
  --json FILE           write a JSON report: outputs, shapes, dtypes, latency`;

const OPT_LEVELS = ['disabled', 'basic', 'extended', 'all'];

class UsageError extends Error {}

// --------------------------------------------------------------------------
// .npy reading and writing (format versions 1.0 to 3.0, C order, little-endian)

// descr -> ONNX Runtime tensor type and the typed array that contains its data.
// float16 has no typed array in Node 20, so its raw bits travel as Uint16Array.
const NPY_TYPES = {
  '<f4': {ortType: 'float32', array: Float32Array},
  '<f8': {ortType: 'float64', array: Float64Array},
  '<i4': {ortType: 'int32', array: Int32Array},
  '<i8': {ortType: 'int64', array: BigInt64Array},
  '|b1': {ortType: 'bool', array: Uint8Array},
  '<f2': {ortType: 'float16', array: Uint16Array},
};
const DESCR_BY_ORT_TYPE = Object.fromEntries(
    Object.entries(NPY_TYPES).map(([descr, info]) => [info.ortType, descr]));
const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]);  // \x93NUMPY

function parseNpyHeader(text, file) {
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) {
    throw new Error(`${file}: invalid .npy header: ${text.trim()}`);
  }
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length > 0).map((s) => {
    if (!/^\d+$/.test(s)) throw new Error(`${file}: invalid dimension '${s}' in .npy header`);
    return Number(s);
  });
  return {descr: descr[1], fortranOrder: fortran[1] === 'True', dims};
}

function readNpy(file) {
  let bytes;
  try {
    bytes = fs.readFileSync(file);
  } catch (error) {
    throw new Error(`cannot read input file ${file}: ${error.message}`);
  }
  if (bytes.length < 10 || !bytes.subarray(0, 6).equals(NPY_MAGIC)) {
    throw new Error(`${file}: not a .npy file (missing the \\x93NUMPY magic)`);
  }
  const major = bytes[6];
  let headerLength;
  let headerStart;
  if (major === 1) {
    headerLength = bytes.readUInt16LE(8);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new Error(`${file}: truncated .npy header`);
    headerLength = bytes.readUInt32LE(8);
    headerStart = 12;
  } else {
    throw new Error(`${file}: unsupported .npy format version ${major}`);
  }
  const dataStart = headerStart + headerLength;
  if (dataStart > bytes.length) throw new Error(`${file}: truncated .npy header`);
  const header = parseNpyHeader(bytes.toString('latin1', headerStart, dataStart), file);

  const type = NPY_TYPES[header.descr];
  if (!type) {
    const hint = header.descr.includes('O') ?
        ' (object arrays are pickled Python lists; pad them to a numeric array first)' : '';
    throw new Error(`${file}: unsupported dtype '${header.descr}'${hint}. ` +
        `Supported: ${Object.keys(NPY_TYPES).join(', ')}`);
  }
  if (header.fortranOrder) {
    throw new Error(`${file}: Fortran-order arrays are not supported. Save a C-order array.`);
  }
  const count = header.dims.reduce((a, b) => a * b, 1);
  const byteLength = count * type.array.BYTES_PER_ELEMENT;
  if (bytes.length - dataStart !== byteLength) {
    throw new Error(`${file}: expected ${byteLength} data bytes for shape ` +
        `[${header.dims}] and dtype '${header.descr}', found ${bytes.length - dataStart}`);
  }
  // Copy into a fresh, aligned buffer: typed arrays need aligned offsets.
  const data = new type.array(count);
  Buffer.from(data.buffer).set(bytes.subarray(dataStart));
  return {ortType: type.ortType, dims: header.dims, data};
}

function encodeNpy(ortType, dims, data) {
  const descr = DESCR_BY_ORT_TYPE[ortType];
  if (!descr) throw new Error(`cannot write output of type ${ortType} as .npy`);
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  // Pad with spaces and a newline so the data starts on a 64-byte boundary.
  const unpadded = NPY_MAGIC.length + 4 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const prefix = Buffer.alloc(10);
  NPY_MAGIC.copy(prefix);
  prefix[6] = 1;
  prefix[7] = 0;
  prefix.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.concat([prefix, Buffer.from(header, 'latin1'), body]);
}

function writeFileAtomic(file, content) {
  const temporary = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(temporary, content);
  fs.renameSync(temporary, file);
}

// --------------------------------------------------------------------------
// Command line

function parseInteger(flag, value, minimum) {
  if (value === undefined || !/^\d+$/.test(value) || Number(value) < minimum) {
    throw new UsageError(`${flag} needs an integer of at least ${minimum}, got '${value}'`);
  }
  return Number(value);
}

function parseArgs(argv) {
  const options = {inputs: [], warmup: 0, iterations: 0, optLevel: 'all'};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${arg} needs a value`);
      return argv[++i];
    };
    switch (arg) {
      case '-h':
      case '--help':
        options.help = true;
        break;
      case '--input': {
        const spec = next();
        const eq = spec.indexOf('=');
        if (eq <= 0 || eq === spec.length - 1) {
          throw new UsageError(`--input needs NAME=FILE.npy, got '${spec}'`);
        }
        options.inputs.push({name: spec.slice(0, eq), file: spec.slice(eq + 1)});
        break;
      }
      case '--output-dir':
        options.outputDir = next();
        break;
      case '--threads':
        options.threads = parseInteger(arg, next(), 1);
        break;
      case '--opt-level':
        options.optLevel = next();
        if (!OPT_LEVELS.includes(options.optLevel)) {
          throw new UsageError(`--opt-level must be one of ${OPT_LEVELS.join(', ')}, got '${options.optLevel}'`);
        }
        break;
      case '--warmup':
        options.warmup = parseInteger(arg, next(), 0);
        break;
      case '--iterations':
        options.iterations = parseInteger(arg, next(), 0);
        break;
      case '--json':
        options.json = next();
        break;
      default:
        if (arg.startsWith('-')) throw new UsageError(`unknown option ${arg}`);
        if (options.model !== undefined) throw new UsageError(`more than one model given: ${options.model}, ${arg}`);
        options.model = arg;
    }
  }
  if (options.help) return options;
  if (options.model === undefined) throw new UsageError('no MODEL given');
  if (options.outputDir === undefined) throw new UsageError('--output-dir is required');
  return options;
}

// --------------------------------------------------------------------------
// Running

function loadOnnxRuntime() {
  const ortDir = process.env.ROFORMER_ORT_DIR || path.join(__dirname, '..', '.deps', 'ort');
  const packageDir = path.join(ortDir, 'node_modules', 'onnxruntime-node');
  if (!fs.existsSync(packageDir)) {
    throw new Error(`onnxruntime-node not found in ${path.join(ortDir, 'node_modules')}. ` +
        'Run scripts/install-ort, or set ROFORMER_ORT_DIR to a folder that contains node_modules/onnxruntime-node.');
  }
  return require(packageDir);
}

function sanitizeName(name) {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_');
}

function outputFileNames(outputNames) {
  const files = {};
  const used = new Set(['outputs.json']);
  for (const name of outputNames) {
    const base = sanitizeName(name);
    let file = `${base}.npy`;
    for (let n = 2; used.has(file); n++) file = `${base}_${n}.npy`;
    used.add(file);
    files[name] = file;
  }
  return files;
}

function percentile(sorted, fraction) {
  // Nearest-rank percentile of an ascending array.
  const rank = Math.max(1, Math.ceil(fraction * sorted.length));
  return sorted[rank - 1];
}

async function timeRuns(session, feeds, warmup, iterations) {
  for (let i = 0; i < warmup; i++) await session.run(feeds);
  const times = [];
  for (let i = 0; i < iterations; i++) {
    const start = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  const sorted = [...times].sort((a, b) => a - b);
  return {
    iterations,
    warmup,
    mean_ms: times.reduce((a, b) => a + b, 0) / times.length,
    p50_ms: percentile(sorted, 0.5),
    p90_ms: percentile(sorted, 0.9),
    min_ms: sorted[0],
    max_ms: sorted[sorted.length - 1],
  };
}

async function run(options) {
  if (!fs.existsSync(options.model)) throw new Error(`model file not found: ${options.model}`);
  const ort = loadOnnxRuntime();

  const sessionOptions = {graphOptimizationLevel: options.optLevel};
  if (options.threads !== undefined) {
    sessionOptions.intraOpNumThreads = options.threads;
    sessionOptions.interOpNumThreads = 1;
  }
  let session;
  try {
    session = await ort.InferenceSession.create(options.model, sessionOptions);
  } catch (error) {
    throw new Error(`ONNX Runtime failed to load ${options.model}: ${error.message}`);
  }

  const feeds = {};
  for (const {name, file} of options.inputs) {
    if (!session.inputNames.includes(name)) {
      throw new Error(`model has no input named '${name}'. Its inputs are: ${session.inputNames.join(', ')}`);
    }
    if (feeds[name] !== undefined) throw new Error(`input '${name}' is given more than once`);
    const array = readNpy(file);
    feeds[name] = new ort.Tensor(array.ortType, array.data, array.dims);
  }
  const missing = session.inputNames.filter((name) => feeds[name] === undefined);
  if (missing.length > 0) {
    throw new Error(`no --input given for model input(s): ${missing.join(', ')}`);
  }

  let results;
  try {
    results = await session.run(feeds);
  } catch (error) {
    throw new Error(`ONNX Runtime failed to run ${options.model}: ${error.message}`);
  }

  fs.mkdirSync(options.outputDir, {recursive: true});
  const files = outputFileNames(session.outputNames);
  const report = {model: options.model, opt_level: options.optLevel, threads: options.threads ?? null, outputs: {}};
  for (const name of session.outputNames) {
    const tensor = results[name];
    writeFileAtomic(path.join(options.outputDir, files[name]), encodeNpy(tensor.type, tensor.dims, tensor.data));
    report.outputs[name] = {file: files[name], dtype: tensor.type, shape: Array.from(tensor.dims)};
  }
  writeFileAtomic(path.join(options.outputDir, 'outputs.json'), JSON.stringify(files, null, 2) + '\n');

  if (options.iterations > 0) {
    report.latency = await timeRuns(session, feeds, options.warmup, options.iterations);
    const latency = report.latency;
    console.log(`latency over ${latency.iterations} runs (${latency.warmup} warm-up): ` +
        `mean ${latency.mean_ms.toFixed(3)} ms, p50 ${latency.p50_ms.toFixed(3)} ms, ` +
        `p90 ${latency.p90_ms.toFixed(3)} ms`);
  }
  if (options.json !== undefined) {
    writeFileAtomic(options.json, JSON.stringify(report, null, 2) + '\n');
  }
}

async function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`ort-run: error: ${error.message}\n${USAGE}`);
    return 1;
  }
  if (options.help) {
    console.log(USAGE);
    return 0;
  }
  try {
    await run(options);
    return 0;
  } catch (error) {
    console.error(`ort-run: error: ${error.message}`);
    return 1;
  }
}

if (require.main === module) {
  main().then((code) => {
    process.exitCode = code;
  });
}

module.exports = {readNpy, encodeNpy, sanitizeName, parseArgs};
