// Allure 3's configuration for the smoke reports (`make report`, the GitHub Action's report step).
// Allure 3 reads allurerc.* (not Allure 2's categories.json); its schema is @allurereport/core's config.
//   categories: one rule per harness category (report/allure-categories.json, written from
//     src/ecs_verdict/allure3.py allure3_categories and pinned by tests/test_allure3.py), matched on the
//     smoke_category label each failed result carries, grouped by task; a suite's own causes get theirs at
//     run time (smoke-report.json, read by report/allure-report.mjs).
//   qualityGate: fails when the run's verdict is not PASS (the metric smoke_verdict_exit_code that the
//     harness writes to smoke-perf.json, 0 on PASS); a missing metric fails too: never green on nothing.
//     `allure generate` does not evaluate the gate; report/allure-report.mjs does, as `allure run` would.
import { readFileSync } from "node:fs";

const categories = JSON.parse(readFileSync(new URL("./report/allure-categories.json", import.meta.url), "utf-8"));

export default {
  name: "ecs-verdict smoke", // a run's report takes its suite's name (report/allure-report.mjs)
  plugins: {
    awesome: {
      options: {
        // Failed steps open, passed ones stay folded: the HTTP exchange that failed is what a person reads.
        stepTreeExpansion: "expand_failed_only",
      },
    },
  },
  categories,
  qualityGate: {
    rules: [{ id: "verdict", metricMax: { key: "smoke_verdict_exit_code", value: 0 } }],
  },
  performance: {
    metrics: { smoke_verdict_exit_code: { title: "Smoke verdict exit code (0 = PASS)" } },
  },
};
