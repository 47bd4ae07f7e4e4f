import type { Command } from 'commander';
import { registerAgentCommands } from './agent.js';
import { registerBudgetCommands } from './budget.js';
import { registerCaCommands } from './ca.js';
import { registerPermissionCommands } from './permission.js';
import { registerPrincipalCommands } from './principal.js';
import { registerRegistryCommands } from './registry-verify.js';
import { registerScopeCommands } from './scope.js';
import { registerServerCertCommands } from './server-cert.js';

/** The operator toolkit: PKI files first, then the registry, in the order an operator meets them. */
export function registerAdminCommands(program: Command): void {
  registerCaCommands(program);
  registerServerCertCommands(program);
  registerAgentCommands(program);
  registerPrincipalCommands(program);
  registerScopeCommands(program);
  registerPermissionCommands(program);
  registerRegistryCommands(program);
  registerBudgetCommands(program);
}
