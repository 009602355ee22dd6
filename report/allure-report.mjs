// Render the HTML report of a finished smoke run with Allure 3 and its quality gate:
//   node report/allure-report.mjs RESULTS_DIR OUTPUT_DIR [ALLURE_PACKAGE_DIR]
// `allure generate` renders but never evaluates the quality gate (only `allure run`, which watches the
// results a command writes while it runs, does). This does what `allure run` does once its command has
// ended: read the results, evaluate the gate of allurerc.mjs, put the gate's results and the run's exit
// code on the report, and exit 1 when the gate failed (after the report is written).
// The report's name is the suite's report name and the run's headline (verdict, first cause, its tasks), and the
// suite's own causes get category rules beside the harness's static ones: both from smoke-report.json.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

// Allure 3.18's quality gate calls Iterator.prototype.toArray, which Node 20 lacks (Node 22 has it).
const iteratorPrototype = Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]()));
if (typeof iteratorPrototype.toArray !== "function") {
  iteratorPrototype.toArray = function toArray() {
    return Array.from(this);
  };
}

const [resultsDir, outputDir, packageDir = resolve(import.meta.dirname, "..", ".tools")] = process.argv.slice(2);
if (!resultsDir || !outputDir) {
  console.error("usage: node report/allure-report.mjs RESULTS_DIR OUTPUT_DIR [ALLURE_PACKAGE_DIR]");
  process.exit(4);
}
const require = createRequire(join(resolve(packageDir), "package.json"));
const core = await import(pathToFileURL(require.resolve("@allurereport/core")).href);

let run = { name: undefined, exit_code: undefined, report_name: undefined, categories: [] };
try {
  run = JSON.parse(readFileSync(join(resultsDir, "smoke-report.json"), "utf-8"));
} catch {
  console.error(`allure-report: no smoke-report.json in ${resultsDir}: the run ended before its verdict`);
}
const configPath = resolve(import.meta.dirname, "..", "allurerc.mjs");
const config = await core.readConfig(process.cwd(), configPath, { output: outputDir });
config.name = run.name ? `${run.report_name || config.name}: ${run.name}` : config.name;
if (Array.isArray(run.categories) && run.categories.length) {
  const known = new Set((config.categories?.rules || []).map((rule) => rule.id));
  const added = run.categories.filter((rule) => !known.has(rule.id));
  config.categories = { ...(config.categories || {}), rules: [...(config.categories?.rules || []), ...added] };
}
const report = new core.AllureReport(config);
await report.start();
await report.readDirectory(resultsDir);
const testResults = await report.store.allTestResults({ includeRetries: false });
const { results } = await report.validate({ trs: testResults });
if (results.length) {
  report.realtimeDispatcher.sendQualityGateResults(results);
}
const failed = core.filterFailedQualityGateResults(results);
const original = Number.isInteger(run.exit_code) ? run.exit_code : -1;
report.realtimeDispatcher.sendGlobalExitCode({ original, actual: failed.length ? Math.max(original, 1) : 0 });
await report.done();
console.log(`allure-report: ${outputDir} (${config.name})`);
if (failed.length) {
  console.error(core.stringifyQualityGateResults(results));
  process.exit(1);
}
