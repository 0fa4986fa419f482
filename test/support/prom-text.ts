// A strict parser of the Prometheus text exposition format (0.0.4) for tests: every line must be a HELP, TYPE or
// sample line of the grammar (or empty); each family is declared (TYPE) once, before its samples, which are contiguous; no
// series appears twice; label values use only the format's escapes. Anything else throws with the line number.
export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: MetricType;
  help: string | null;
  samples: Sample[];
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const types = new Set<MetricType>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** Values as Prometheus reads them (Go's strconv.ParseFloat: NaN and Inf in any case; prom-client writes "Nan" for an
 *  event-loop lag with no sample yet). */
function parseValue(s: string, where: string): number {
  if (/^nan$/i.test(s)) return NaN;
  if (/^\+?inf(inity)?$/i.test(s)) return Infinity;
  if (/^-inf(inity)?$/i.test(s)) return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`${where}: bad sample value ${JSON.stringify(s)}`);
  return Number(s);
}

/** The family a sample name belongs to, given the declared families. */
function familyOf(sample: string, families: Map<string, Family>): Family | undefined {
  const exact = families.get(sample);
  if (exact !== undefined) return exact;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!sample.endsWith(suffix)) continue;
    const f = families.get(sample.slice(0, -suffix.length));
    if (f === undefined) continue;
    if (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket')) return f;
  }
  return undefined;
}

function parseLabels(text: string, where: string): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1; // past '{'
  for (;;) {
    if (text[i] === '}') return { labels, rest: text.slice(i + 1) };
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new Error(`${where}: unterminated label set`);
    const name = text.slice(i, eq);
    if (!labelName.test(name)) throw new Error(`${where}: bad label name ${JSON.stringify(name)}`);
    if (name in labels) throw new Error(`${where}: label ${name} twice`);
    if (text[eq + 1] !== '"') throw new Error(`${where}: label ${name} value not quoted`);
    let value = '';
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === '\\') {
        const next = text[++j];
        if (next === '\\') value += '\\';
        else if (next === '"') value += '"';
        else if (next === 'n') value += '\n';
        else throw new Error(`${where}: bad escape \\${next ?? ''} in label ${name}`);
      } else {
        value += text[j];
      }
    }
    if (j >= text.length) throw new Error(`${where}: unterminated value of label ${name}`);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new Error(`${where}: expected , or } after label ${name}`);
  }
}

export function parsePrometheusText(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  const families = new Map<string, Family>();
  const series = new Set<string>();
  const closed = new Set<string>();
  let current: Family | undefined;
  const lines = text.slice(0, -1).split('\n');
  lines.forEach((line, index) => {
    const where = `line ${index + 1} (${JSON.stringify(line.slice(0, 120))})`;
    // The format ignores empty lines (prom-client puts one between families).
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (m === null) throw new Error(`${where}: a comment that is neither HELP nor TYPE`);
      const [, what, name = '', rest = ''] = m;
      if (!metricName.test(name)) throw new Error(`${where}: bad metric name`);
      let f = families.get(name);
      if (f !== undefined && closed.has(name)) throw new Error(`${where}: family ${name} declared again after others`);
      if (current !== undefined && current.name !== name) closed.add(current.name);
      if (f === undefined) {
        f = { name, type: 'untyped', help: null, samples: [] };
        families.set(name, f);
      }
      current = f;
      if (what === 'HELP') {
        if (f.help !== null) throw new Error(`${where}: HELP of ${name} twice`);
        f.help = rest.replace(/\\(n|\\)/g, (_s, c: string) => (c === 'n' ? '\n' : '\\'));
      } else {
        if (!types.has(rest as MetricType)) throw new Error(`${where}: unknown type ${JSON.stringify(rest)}`);
        if (f.samples.length > 0 || f.type !== 'untyped') throw new Error(`${where}: TYPE of ${name} after its samples or twice`);
        f.type = rest as MetricType;
      }
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(.*)$/.exec(line);
    if (m === null) throw new Error(`${where}: not a sample line`);
    const [, name = '', after = ''] = m;
    let labels: Record<string, string> = {};
    let rest = after;
    if (rest.startsWith('{')) ({ labels, rest } = parseLabels(rest, where));
    const parts = /^ (\S+)( -?\d+)?$/.exec(rest);
    if (parts === null) throw new Error(`${where}: expected " value [timestamp]" after the name and labels`);
    const family = familyOf(name, families);
    if (family === undefined) throw new Error(`${where}: sample of ${name} without a TYPE before it`);
    if (family !== current) throw new Error(`${where}: sample of ${family.name} outside its family's block`);
    const key = `${name}{${Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`;
    if (series.has(key)) throw new Error(`${where}: series ${key} twice`);
    series.add(key);
    family.samples.push({ name, labels, value: parseValue(parts[1] ?? '', where) });
  });
  return families;
}

/** The value of the one sample of `name` whose labels include `labels`; throws when there is none or several. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const found = [...families.values()].flatMap((f) => f.samples).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length !== 1) throw new Error(`expected one sample ${name}${JSON.stringify(labels)}, found ${found.length}`);
  return found[0]!.value;
}

/** The value of the sample, or undefined when there is none. */
export function maybeSample(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = [...families.values()].flatMap((f) => f.samples).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`expected at most one sample ${name}${JSON.stringify(labels)}, found ${found.length}`);
  return found[0]?.value;
}
