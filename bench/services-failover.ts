// Real services failing over in the two-host lab (`twinlayer agent` and keepalived on both hosts, the embedded S3
// server): for dnsmasq (DHCP and DNS), nginx (HTTPS) and nftables (a firewall), each run a fresh lab where the service
// is changed on host a, staged on b, and a is SIGKILLed whole; measured is kill → the first good answer of the
// service's real client in the client namespace:
//   dhcp      dig of the name added on a answered on the VIP by b's twin (then, the client's DHCP renewal: asked → ACK)
//   web       curl over HTTPS to the VIP answering the changed site with a's certificate
//   firewall  the port the edited ruleset drops gets no answer on the VIP while the open port answers from b
// Prints a table (median, min, max) and writes bench/results/<date>-services-failover.json.
//   node --import tsx bench/services-failover.ts [--runs 5] [--service dhcp|web|firewall]
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEMO_SERVICES, runServiceFailover, type DemoService, type ServiceFailoverRun } from '../src/lab/service-failover.js';
import { summarize } from './lib/stats.js';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? undefined : process.argv[i + 1];
};
const runs = Number(arg('runs') ?? 5);
if (!Number.isInteger(runs) || runs < 1 || runs > 20) throw new Error(`--runs: expected 1-20, got ${arg('runs')}`);
const only = arg('service');
const services: DemoService[] = only === undefined ? [...DEMO_SERVICES] : DEMO_SERVICES.filter((s) => s === only);
if (services.length === 0) throw new Error(`--service: one of ${DEMO_SERVICES.join(', ')}, got ${only}`);

const rows: Array<Omit<ServiceFailoverRun, 'answers'> & { run: number; answers: ServiceFailoverRun['answers'] }> = [];
let allOk = true;
for (const service of services) {
  for (let run = 1; run <= runs; run++) {
    const r = await runServiceFailover(service);
    allOk &&= r.ok;
    rows.push({ run, ...r });
    const extra = Object.entries(r.extra).map(([k, v]) => `, ${k} ${v} ms`).join('');
    process.stdout.write(`${service} run ${run}: kill → first good answer ${r.killToAnswerMs} ms (promotion ${r.promotionMs} ms${extra}), as expected: ${r.ok}\n`);
  }
}

const metrics = new Map<string, number[]>();
const add = (k: string, v: number): void => void metrics.set(k, [...(metrics.get(k) ?? []), v]);
for (const r of rows) {
  add(`${r.service}: kill → first good answer of its client`, r.killToAnswerMs);
  add(`${r.service}: the new primary's promotion (its status)`, r.promotionMs);
  for (const [k, v] of Object.entries(r.extra)) add(`${r.service}: ${k}`, v);
}
const summary = Object.fromEntries([...metrics].map(([k, xs]) => [k, summarize(xs)]));
process.stdout.write(`\n| metric (${runs} runs each) | median ms | min | max |\n|---|---|---|---|\n`);
for (const [k, v] of Object.entries(summary)) process.stdout.write(`| ${k} | ${v.median} | ${v.min} | ${v.max} |\n`);
const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
await mkdir(dir, { recursive: true });
const file = join(dir, `${new Date().toISOString().slice(0, 10)}-services-failover.json`);
await writeFile(file, JSON.stringify({ when: new Date().toISOString(), runs, allAsExpected: allOk, summary, rows }, null, 2) + '\n');
process.stdout.write(`wrote ${file}\n`);
process.exitCode = allOk ? 0 : 1;
