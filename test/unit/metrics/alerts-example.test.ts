// infra/prometheus/twinlayer-alerts.yml: a rules file of the shape Prometheus loads, the five alerts an operator
// needs, and every twinlayer metric an expression names is one the registry exposes (a renamed metric would leave
// an alert that never fires).
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';

import { Metrics } from '../../../src/metrics/index.js';
import { parsePrometheusText } from '../../support/prom-text.js';

const FILE = fileURLToPath(new URL('../../../infra/prometheus/twinlayer-alerts.yml', import.meta.url));

const rulesSchema = z.strictObject({
  groups: z.array(z.strictObject({
    name: z.string().min(1),
    rules: z.array(z.strictObject({
      alert: z.string().regex(/^[A-Za-z][A-Za-z0-9_]*$/),
      expr: z.string().min(1),
      for: z.string().regex(/^\d+[smh]$/),
      labels: z.strictObject({ severity: z.enum(['warning', 'critical']) }),
      annotations: z.strictObject({ summary: z.string().min(1), description: z.string().min(1) }),
    })).min(1),
  })).length(1),
});

describe('infra/prometheus alert rules', () => {
  it('parse as a rules file, cover the five conditions, and name only metrics twinlayer exposes', async () => {
    const rules = rulesSchema.parse(parse(await readFile(FILE, 'utf8'))).groups[0]!.rules;
    const names = rules.map((r) => r.alert);
    for (const wanted of ['TwinlayerDown', 'TwinlayerReplicationLagHigh', 'TwinlayerLastCommitTooOld', 'TwinlayerFailuresRising', 'TwinlayerStandbyNotStaging']) {
      assert.ok(names.includes(wanted), `${wanted} is there`);
    }
    assert.equal(new Set(names).size, names.length, 'no alert twice');
    const exposed = new Set(parsePrometheusText(await new Metrics({ processMetrics: false }).render()).keys());
    for (const r of rules) {
      const used = r.expr.match(/\btwinlayer_[a-z_]+/g) ?? [];
      assert.ok(used.length > 0 || r.alert === 'TwinlayerDown', `${r.alert} names a twinlayer metric`);
      for (const name of used) assert.ok(exposed.has(name), `${r.alert}: ${name} is a metric twinlayer exposes`);
      // Balanced brackets and braces: a cheap guard against a broken expression.
      for (const [open, close] of [['(', ')'], ['{', '}'], ['[', ']']] as const) {
        assert.equal(r.expr.split(open).length, r.expr.split(close).length, `${r.alert}: ${open}${close} balanced`);
      }
    }
  });
});
