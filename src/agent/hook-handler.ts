// The agent behind the hook: every notification goes to it; status and role gauges come from it.
import type { Notification, VrrpHandler } from '../vrrp-hook/index.js';
import type { Agent } from './agent.js';
import type { Role } from './types.js';

const roles: readonly Role[] = ['primary', 'standby', 'promoting', 'demoting'];

export class AgentHookHandler implements VrrpHandler {
  readonly #agent: Agent;
  constructor(agent: Agent) {
    this.#agent = agent;
  }

  notify(n: Notification): Promise<object> {
    return this.#agent.notify(n);
  }

  status(): Promise<object> {
    return this.#agent.status();
  }

  metrics(): string {
    const lines = ['# HELP twinlayer_agent_role Role of this host: 1 for the current role, 0 for the others.', '# TYPE twinlayer_agent_role gauge'];
    for (const r of roles) lines.push(`twinlayer_agent_role{role="${r}"} ${this.#agent.role === r ? 1 : 0}`);
    return lines.join('\n') + '\n';
  }
}
