// The agent behind the hook: every notification goes to it; status and role gauges come from it.
import { registerStateGauge, type Metrics } from '../metrics/index.js';
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

  registerMetrics(metrics: Metrics): void {
    registerStateGauge(metrics, {
      name: 'twinlayer_agent_role',
      help: 'Role of this host: 1 for the current role, 0 for the others.',
      label: 'role',
      values: roles,
      current: () => this.#agent.role,
    });
  }
}
