// keepalived per lab host: VRRPv3 (sub-second adverts), unicast between the hosts' own addresses, the VIP on eth0.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { LabProcess } from './processes.js';
import { spawnLogged } from './processes.js';

export interface KeepalivedPlan {
  labId: string;
  host: string;
  netns: string;
  ip: string;
  peers: string[];
  vip: string;
  vrid: number;
  priority: number;
  advertIntSec: number;
  notify: string;
  dir: string;
}

function quote(s: string): string {
  if (/["\s\\]/.test(s)) throw new Error(`keepalived path must not hold spaces, quotes or backslashes: ${JSON.stringify(s)}`);
  return `"${s}"`;
}

export function renderKeepalivedConf(p: KeepalivedPlan): string {
  // Every instance starts BACKUP with nopreempt: the first host started alone wins the election, and a host that
  // comes back later never takes the VIP back from the one that now runs the twins (keepalived ignores nopreempt
  // on an instance whose initial state is MASTER, hence BACKUP on all).
  return `global_defs {
  router_id tl_${p.labId}_${p.host.replace(/[^A-Za-z0-9_]/g, '_')}
  vrrp_version 3
  script_user root
  enable_script_security
  vrrp_garp_master_delay 1
  vrrp_garp_master_repeat 3
}

vrrp_instance tl_${p.labId} {
  state BACKUP
  nopreempt
  interface eth0
  virtual_router_id ${p.vrid}
  priority ${p.priority}
  advert_int ${p.advertIntSec}
  unicast_src_ip ${p.ip}
  unicast_peer {
${p.peers.map((ip) => `    ${ip}`).join('\n')}
  }
  virtual_ipaddress {
    ${p.vip}/24 dev eth0
  }
  notify ${quote(p.notify)}
}
`;
}

export interface RunningKeepalived {
  plan: KeepalivedPlan;
  proc: LabProcess;
  conf: string;
  vrrpPidFile: string;
  /** Pid of the VRRP child process, when its pidfile is there. */
  vrrpPid(): Promise<number | null>;
}

export async function startKeepalived(
  plan: KeepalivedPlan,
  opts: { env?: Record<string, string>; log?: (line: string) => void },
): Promise<RunningKeepalived> {
  const conf = join(plan.dir, `keepalived-${plan.host}.conf`);
  const pidFile = join(plan.dir, `keepalived-${plan.host}.pid`);
  const vrrpPidFile = join(plan.dir, `keepalived-${plan.host}.vrrp.pid`);
  await writeFile(conf, renderKeepalivedConf(plan), { mode: 0o600 });
  // `ip netns exec` execs keepalived in place, so the spawned pid is keepalived's parent process.
  const proc = await spawnLogged(
    `keepalived ${plan.host}`,
    'ip',
    ['netns', 'exec', plan.netns, 'keepalived', '-n', '-l', '-D', '-G', '-P', '-f', conf, '-p', pidFile, '-r', vrrpPidFile],
    { env: { ...process.env, ...opts.env }, ...(opts.log ? { log: opts.log } : {}) },
  );
  return {
    plan,
    proc,
    conf,
    vrrpPidFile,
    async vrrpPid() {
      try {
        const n = Number((await readFile(vrrpPidFile, 'utf8')).trim());
        return Number.isInteger(n) && n > 0 ? n : null;
      } catch {
        return null;
      }
    },
  };
}
