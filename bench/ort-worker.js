#!/usr/bin/env node
// A long-lived ONNX Runtime session for scripts/bench. It loads a model once,
// runs the warm-up, then times runs on request, so the engines can take turns
// run by run without creating a session for each turn.
//
// Usage:
//   node bench/ort-worker.js MODEL --input NAME=FILE.npy ... [--threads N]
//       [--opt-level disabled|basic|extended|all] [--warmup W]
//
// Protocol: one JSON object per line on stdout. After loading and warming up
// it writes {"ready": true, "load_ms": ..., "warmup": W}. Then it reads
// commands from stdin, one per line:
//   run K        time K runs; replies {"latencies_ms": [...], "cpu_ms": [...]},
//                where cpu_ms is the processor time of the whole process
//                (all threads, user and system) during each run
//   save DIR     run once and write each output as DIR/<name>.npy (names
//                sanitized as scripts/ort-run.js does); replies {"saved": DIR}
//   quit         exit (end of input does the same)
// Errors go to stderr as one line and end the process with exit code 1.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');

const ortRun = require(path.join(__dirname, '..', 'scripts', 'ort-run.js'));

const OPT_LEVELS = ['disabled', 'basic', 'extended', 'all'];

function parseArgs(argv) {
  const options = {inputs: [], warmup: 1, optLevel: 'all'};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--input') {
      const spec = next();
      const eq = spec.indexOf('=');
      if (eq <= 0 || eq === spec.length - 1) {
        throw new Error(`--input needs NAME=FILE.npy, got '${spec}'`);
      }
      options.inputs.push({name: spec.slice(0, eq), file: spec.slice(eq + 1)});
    } else if (arg === '--threads' || arg === '--warmup') {
      const value = next();
      if (!/^\d+$/.test(value)) throw new Error(`${arg} needs a non-negative integer, got '${value}'`);
      options[arg === '--threads' ? 'threads' : 'warmup'] = Number(value);
    } else if (arg === '--opt-level') {
      options.optLevel = next();
      if (!OPT_LEVELS.includes(options.optLevel)) {
        throw new Error(`--opt-level must be one of ${OPT_LEVELS.join(', ')}, got '${options.optLevel}'`);
      }
    } else if (arg.startsWith('-')) {
      throw new Error(`unknown option ${arg}`);
    } else if (options.model === undefined) {
      options.model = arg;
    } else {
      throw new Error(`more than one model given: ${options.model}, ${arg}`);
    }
  }
  if (options.model === undefined) throw new Error('no MODEL given');
  if (options.threads === 0) throw new Error('--threads must be at least 1');
  return options;
}

function loadOnnxRuntime() {
  const ortDir = process.env.ROFORMER_ORT_DIR || path.join(__dirname, '..', '.deps', 'ort');
  const packageDir = path.join(ortDir, 'node_modules', 'onnxruntime-node');
  if (!fs.existsSync(packageDir)) {
    throw new Error(`onnxruntime-node not found in ${path.join(ortDir, 'node_modules')}; ` +
        'run scripts/install-ort or set ROFORMER_ORT_DIR');
  }
  return require(packageDir);
}

function reply(object) {
  process.stdout.write(JSON.stringify(object) + '\n');
}

async function createSession(ort, options) {
  const sessionOptions = {graphOptimizationLevel: options.optLevel};
  if (options.threads !== undefined) {
    sessionOptions.intraOpNumThreads = options.threads;
    sessionOptions.interOpNumThreads = 1;
  }
  try {
    return await ort.InferenceSession.create(options.model, sessionOptions);
  } catch (error) {
    throw new Error(`ONNX Runtime failed to load ${options.model}: ${error.message}`);
  }
}

function readFeeds(ort, session, inputs) {
  const feeds = {};
  for (const {name, file} of inputs) {
    if (!session.inputNames.includes(name)) {
      throw new Error(`model has no input named '${name}'; its inputs are ${session.inputNames.join(', ')}`);
    }
    const array = ortRun.readNpy(file);
    feeds[name] = new ort.Tensor(array.ortType, array.data, array.dims);
  }
  const missing = session.inputNames.filter((name) => feeds[name] === undefined);
  if (missing.length > 0) throw new Error(`no --input given for model input(s) ${missing.join(', ')}`);
  return feeds;
}

async function timeRuns(session, feeds, count) {
  const latencies = [];
  const cpu = [];
  for (let i = 0; i < count; i++) {
    const cpuStart = process.cpuUsage();
    const start = process.hrtime.bigint();
    await session.run(feeds);
    latencies.push(Number(process.hrtime.bigint() - start) / 1e6);
    const cpuUsed = process.cpuUsage(cpuStart);
    cpu.push((cpuUsed.user + cpuUsed.system) / 1e3);
  }
  return {latencies, cpu};
}

async function saveOutputs(session, feeds, dir) {
  const results = await session.run(feeds);
  fs.mkdirSync(dir, {recursive: true});
  for (const name of session.outputNames) {
    const tensor = results[name];
    const file = path.join(dir, `${ortRun.sanitizeName(name)}.npy`);
    fs.writeFileSync(file, ortRun.encodeNpy(tensor.type, tensor.dims, tensor.data));
  }
}

async function handleCommand(line, session, feeds) {
  const words = line.trim().split(/\s+/);
  if (words[0] === 'run' && words.length === 2 && /^\d+$/.test(words[1])) {
    const timed = await timeRuns(session, feeds, Number(words[1]));
    reply({latencies_ms: timed.latencies, cpu_ms: timed.cpu});
  } else if (words[0] === 'save' && words.length === 2) {
    await saveOutputs(session, feeds, words[1]);
    reply({saved: words[1]});
  } else {
    throw new Error(`unknown command '${line.trim()}'; expected 'run K', 'save DIR' or 'quit'`);
  }
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const ort = loadOnnxRuntime();
  const loadStart = process.hrtime.bigint();
  const session = await createSession(ort, options);
  const loadMs = Number(process.hrtime.bigint() - loadStart) / 1e6;
  const feeds = readFeeds(ort, session, options.inputs);
  await timeRuns(session, feeds, options.warmup);
  reply({ready: true, load_ms: loadMs, warmup: options.warmup});

  const lines = readline.createInterface({input: process.stdin, terminal: false});
  for await (const line of lines) {
    if (line.trim() === '') continue;
    if (line.trim() === 'quit') break;
    await handleCommand(line, session, feeds);
  }
}

main().then(
    () => process.exit(0),
    (error) => {
      process.stderr.write(`ort-worker: error: ${error.message}\n`);
      process.exit(1);
    });
